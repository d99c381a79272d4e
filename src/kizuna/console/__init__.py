"""The admin console: server-rendered screens (Jinja2) for store, CRM and management staff.

`install(app)` mounts it at /console. Its pages, styles, scripts and chart library are all served
by Kizuna itself; nothing comes from a CDN.
"""
