"""The lab's scheduling view: `optialloc web` (status page, JSON API, Prometheus metrics).

`app.create_app` builds the FastAPI app; `refresher` keeps an immutable view of
the state a `serve` keeps (`state`), which the JSON API (`api`), the admin
actions (`admin`), the page (`page`) and `/metrics` (`metrics`) answer from.
See docs/web.md. Nothing here is imported by the dispatcher.
"""
