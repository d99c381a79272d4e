// Dashboard charts, drawn by the vendored Chart.js from data the server embedded in the page.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const source = document.getElementById("dashboard-data");
  if (!source || !window.Chart) return;
  const { chart, labels } = JSON.parse(source.textContent);
  const font = { family: getComputedStyle(document.documentElement).fontFamily };
  Chart.defaults.font.family = font.family;
  new Chart(document.getElementById("chart-points"), {
    type: "bar",
    data: {
      labels: chart.labels,
      datasets: [
        { label: labels.issued, data: chart.issued, backgroundColor: "#235b8c" },
        { label: labels.redeemed, data: chart.redeemed, backgroundColor: "#b0413e" },
        { label: labels.expired, data: chart.expired, backgroundColor: "#9aa5b1" },
      ],
    },
    options: { responsive: true, animation: false, scales: { y: { beginAtZero: true } } },
  });
  new Chart(document.getElementById("chart-members"), {
    type: "line",
    data: {
      labels: chart.labels,
      datasets: [{ label: labels.new_members, data: chart.new_members, borderColor: "#1f7a4d", backgroundColor: "rgba(31,122,77,.15)", fill: true, tension: 0.25 }],
    },
    options: { responsive: true, animation: false, scales: { y: { beginAtZero: true, ticks: { precision: 0 } } } },
  });
});
