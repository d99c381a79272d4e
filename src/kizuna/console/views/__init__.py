"""The console's screens, one module per area (thin: parse the form, call a service, render)."""
