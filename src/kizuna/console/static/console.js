// Small progressive enhancements; every page works without them.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  // Forms that do something hard to undo ask first: <form data-confirm="...">.
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  }
  // The menu starts open on wide screens and folded on phones.
  const menu = document.querySelector("details.menu");
  if (menu && window.matchMedia("(max-width: 760px)").matches) menu.open = false;
});
