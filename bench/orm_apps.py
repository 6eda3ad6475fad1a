"""Healthy apps of the kind the false-alarm count must hold for, for bench/orm_healthy.py:
a shop over sqlite through an ORM, with templates, sessions and varied URLs.

    ORM_FRAMEWORK=flask ORM_DB=/tmp/shop.db gunicorn -w 2 orm_apps:app   (from bench/)
    ORM_FRAMEWORK=flask ORM_DB=/tmp/shop.db python orm_apps.py           (makes the database)

``flask``: Flask, SQLAlchemy's ORM, Jinja2, cookie sessions. ``fastapi``: the same
database code under FastAPI (``-k uvicorn_worker.UvicornWorker``), pydantic models,
Jinja2, starlette's cookie sessions, some routes run in threads by FastAPI and some
``async`` handing the query to ``asyncio.to_thread``. ``django``: Django's ORM, its
templates, sessions kept in the database. All three serve the same routes: the newest
orders rendered (``/``), a customer's orders (``/user/<id>``), a JSON search with a
query string that varies (``/api/orders?q=...&n=...``), a new order that keeps the
table at its newest 2,000 (``POST /order``), a note edited (``POST /order/<id>/note``)
and an aggregate (``/stats``). Nothing is kept between requests but what the database,
the session and bounded caches (an ``lru_cache(256)``, the libraries' own) keep. The
middleware is added as README says: ``watch_all=True``, ``interval=1.0``, the rest
default (``ORM_NO_TOOL=1``: without it). ``ORM_LEAK=listener`` (Flask only) adds ``/leak``,
which registers a SQLAlchemy listener per request and never removes it (bench/orm_leak.py).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import random

FRAMEWORK = os.environ.get("ORM_FRAMEWORK", "flask")
DB = os.environ.get("ORM_DB", "shop.db")
TOOL = os.environ.get("ORM_NO_TOOL") != "1"
MEMTRACKER = {"path": "/debug/memory", "watch_all": True, "interval": 1.0}
CUSTOMERS, ORDERS, KEEP = 200, 1500, 2000

# (the monitor's verdicts, verifications and reports, for bench/orm_healthy.py to count)
logging.basicConfig(level=logging.INFO, format="%(process)d %(message)s")


@functools.lru_cache(maxsize=256)
def price_of(sku: str) -> int:
    return sum(map(ord, sku)) % 97


def seed_rows(rnd: random.Random) -> list[tuple[int, int, str, list[tuple[str, int]]]]:
    """The orders a fresh database starts with: (customer, total, note, items)."""
    return [
        (
            rnd.randrange(CUSTOMERS),
            rnd.randrange(500),
            f"note {k} " + "x" * rnd.randrange(60),
            [(f"SKU{rnd.randrange(400)}", rnd.randrange(1, 5)) for _ in range(rnd.randrange(1, 6))],
        )
        for k in range(ORDERS)
    ]


if FRAMEWORK in ("flask", "fastapi"):
    from sqlalchemy import ForeignKey, String, create_engine, func, select
    from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, sessionmaker

    class Base(DeclarativeBase):
        pass

    class Customer(Base):
        __tablename__ = "customers"
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str] = mapped_column(String(50))
        orders: Mapped[list[Order]] = relationship(back_populates="customer")

    class Order(Base):
        __tablename__ = "orders"
        id: Mapped[int] = mapped_column(primary_key=True)
        customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"))
        total: Mapped[int]
        note: Mapped[str] = mapped_column(String(200))
        customer: Mapped[Customer] = relationship(back_populates="orders")
        items: Mapped[list[Item]] = relationship(back_populates="order", cascade="all, delete-orphan")

    class Item(Base):
        __tablename__ = "items"
        id: Mapped[int] = mapped_column(primary_key=True)
        order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"))
        sku: Mapped[str] = mapped_column(String(20))
        qty: Mapped[int]
        order: Mapped[Order] = relationship(back_populates="items")

    engine = create_engine(f"sqlite:///{DB}", connect_args={"check_same_thread": False})
    Sessions = sessionmaker(engine)
    PAGE = (
        "<html><body><h1>{{ title }}</h1>{% for o in orders %}<div>#{{ o.id }} {{ o.customer.name|e }}: "
        "{{ o.total }}<ul>{% for i in o.items %}<li>{{ i.sku }} x{{ i.qty }}</li>{% endfor %}</ul>"
        "{{ o.note|truncate(40) }}</div>{% endfor %}<p>visits: {{ visits }}</p></body></html>"
    )

    def make_database() -> None:
        Base.metadata.create_all(engine)
        with Sessions.begin() as db:
            customers = [Customer(name=f"user{k}") for k in range(CUSTOMERS)]
            db.add_all(customers)
            db.flush()
            for who, total, text, items in seed_rows(random.Random(1)):
                order = Order(customer_id=customers[who].id, total=total, note=text)
                order.items = [Item(sku=sku, qty=qty) for sku, qty in items]
                db.add(order)

    def add_order(data: dict) -> int:
        """A new order, and the table kept at its newest KEEP."""
        with Sessions.begin() as db:
            order = Order(customer_id=data["user"], total=0, note=data.get("note", ""))
            for sku, qty in data["items"]:
                order.items.append(Item(sku=sku, qty=qty))
                order.total += qty * price_of(sku)
            db.add(order)
            db.flush()
            count = db.scalar(select(func.count(Order.id))) or 0
            for old in db.scalars(select(Order).order_by(Order.id).limit(max(0, count - KEEP))):
                db.delete(old)
            return order.id

    def search(query: str, most: int) -> list[dict]:
        with Sessions() as db:
            rows = db.scalars(select(Order).where(Order.note.contains(query)).limit(most))
            return [
                {"id": o.id, "total": o.total, "items": [[i.sku, i.qty, price_of(i.sku)] for i in o.items]}
                for o in rows
            ]

    def edit_note(oid: int, text: str) -> bool:
        with Sessions.begin() as db:
            order = db.get(Order, oid)
            if order is None:
                return False
            order.note = text[:200]
            return True

    def totals() -> list[list]:
        with Sessions() as db:
            rows = db.execute(
                select(Customer.name, func.count(Order.id), func.sum(Order.total)).join(Order).group_by(Customer.id)
            ).all()
        return [[name, count, total] for name, count, total in rows]


if FRAMEWORK == "flask":
    from flask import Flask, abort, jsonify, redirect, render_template_string, request, session

    app = Flask(__name__)
    app.secret_key = "bench-only"
    if TOOL:
        from memtracker_web.flask import MemoryTracker

        app.config["MEMTRACKER"] = MEMTRACKER
        MemoryTracker(app)

    @app.get("/")
    def index():
        session["visits"] = session.get("visits", 0) + 1
        with Sessions() as db:
            orders = db.scalars(select(Order).order_by(Order.id.desc()).limit(20)).all()
            return render_template_string(PAGE, title="Recent", orders=orders, visits=session["visits"])

    @app.get("/user/<int:cid>")
    def customer(cid: int):
        with Sessions() as db:
            found = db.get(Customer, cid)
            if found is None:
                abort(404)
            orders = db.scalars(select(Order).where(Order.customer_id == cid).limit(30)).all()
            return render_template_string(PAGE, title=found.name, orders=orders, visits=session.get("visits", 0))

    @app.get("/api/orders")
    def api_orders():
        return jsonify(search(request.args.get("q", ""), int(request.args.get("n", "25"))))

    @app.post("/order")
    def new_order():
        return jsonify({"id": add_order(request.get_json())}), 201

    @app.post("/order/<int:oid>/note")
    def note(oid: int):
        if not edit_note(oid, request.form.get("note", "")):
            abort(404)
        return redirect("/")

    @app.get("/stats")
    def stats():
        return jsonify(totals())

    if os.environ.get("ORM_LEAK") == "listener":
        from sqlalchemy import event

        @app.get("/leak")
        def leak():
            """A listener registered per request and never removed (bench/orm_leak.py)."""

            def audit(conn, cursor, statement, parameters, context, executemany):  # ALLOC listener
                return None

            event.listen(engine, "before_cursor_execute", audit)
            with Sessions() as db:
                return jsonify([o.id for o in db.scalars(select(Order).limit(1))])

elif FRAMEWORK == "fastapi":
    import asyncio
    import urllib.parse

    from fastapi import FastAPI, HTTPException, Request
    from fastapi.responses import HTMLResponse, RedirectResponse
    from jinja2 import Environment
    from pydantic import BaseModel
    from starlette.middleware.sessions import SessionMiddleware

    class NewOrder(BaseModel):
        user: int
        note: str = ""
        items: list[tuple[str, int]]

    class Made(BaseModel):
        id: int

    page = Environment(autoescape=True).from_string(PAGE)
    app = FastAPI()
    app.add_middleware(SessionMiddleware, secret_key="bench-only")
    if TOOL:
        from memtracker_web.asgi import MemoryTrackerMiddleware

        app.add_middleware(MemoryTrackerMiddleware, **MEMTRACKER)

    @app.get("/", response_class=HTMLResponse)
    def index(request: Request) -> str:
        request.session["visits"] = request.session.get("visits", 0) + 1
        with Sessions() as db:
            orders = db.scalars(select(Order).order_by(Order.id.desc()).limit(20)).all()
            return page.render(title="Recent", orders=orders, visits=request.session["visits"])

    @app.get("/user/{cid}", response_class=HTMLResponse)
    def customer(cid: int, request: Request) -> str:
        with Sessions() as db:
            found = db.get(Customer, cid)
            if found is None:
                raise HTTPException(404)
            orders = db.scalars(select(Order).where(Order.customer_id == cid).limit(30)).all()
            return page.render(title=found.name, orders=orders, visits=request.session.get("visits", 0))

    @app.get("/api/orders")
    async def api_orders(q: str = "", n: int = 25) -> list[dict]:
        return await asyncio.to_thread(search, q, n)

    @app.post("/order", status_code=201)
    def new_order(order: NewOrder) -> Made:
        return Made(id=add_order(order.model_dump()))

    @app.post("/order/{oid}/note")
    async def note(oid: int, request: Request) -> RedirectResponse:
        # (a form read by hand: FastAPI's Form needs python-multipart)
        text = urllib.parse.parse_qs((await request.body()).decode()).get("note", [""])[0]
        if not await asyncio.to_thread(edit_note, oid, text):
            raise HTTPException(404)
        return RedirectResponse("/", status_code=303)

    @app.get("/stats")
    def stats() -> list[list]:
        return totals()

else:
    import django
    from django.conf import settings

    settings.configure(
        SECRET_KEY="bench-only",
        DEBUG=False,
        ALLOWED_HOSTS=["127.0.0.1"],
        ROOT_URLCONF=__name__,
        INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "django.contrib.sessions", "orm_shop"],
        MIDDLEWARE=(["memtracker_web.django.MemoryTrackerMiddleware"] if TOOL else [])
        + ["django.contrib.sessions.middleware.SessionMiddleware", "django.middleware.common.CommonMiddleware"],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": DB}},
        TEMPLATES=[
            {
                "BACKEND": "django.template.backends.django.DjangoTemplates",
                "OPTIONS": {
                    "loaders": [
                        (
                            "django.template.loaders.locmem.Loader",
                            {
                                "page.html": "<html><body><h1>{{ title }}</h1>{% for o in orders %}<div>#{{ o.id }} "
                                "{{ o.customer.name }}: {{ o.total }}<ul>{% for i in o.items.all %}<li>{{ i.sku }} "
                                "x{{ i.qty }}</li>{% endfor %}</ul>{{ o.note|truncatechars:40 }}</div>{% endfor %}"
                                "<p>visits: {{ visits }}</p></body></html>"
                            },
                        )
                    ]
                },
            }
        ],
        MEMTRACKER=MEMTRACKER,
        USE_TZ=True,
    )
    django.setup()

    from django.core.wsgi import get_wsgi_application
    from django.db import transaction
    from django.db.models import Count, Sum
    from django.http import Http404, HttpResponseRedirect, JsonResponse
    from django.shortcuts import render
    from django.urls import path
    from django.views.decorators.csrf import csrf_exempt

    from orm_shop.models import Customer, Item, Order

    def index(request):
        request.session["visits"] = request.session.get("visits", 0) + 1
        orders = Order.objects.select_related("customer").prefetch_related("items").order_by("-id")[:20]
        return render(request, "page.html", {"title": "Recent", "orders": orders, "visits": request.session["visits"]})

    def customer(request, cid):
        try:
            found = Customer.objects.get(pk=cid)
        except Customer.DoesNotExist:
            raise Http404 from None
        orders = found.orders.prefetch_related("items")[:30]
        context = {"title": found.name, "orders": orders, "visits": request.session.get("visits", 0)}
        return render(request, "page.html", context)

    def api_orders(request):
        query, most = request.GET.get("q", ""), int(request.GET.get("n", "25"))
        rows = Order.objects.filter(note__contains=query).prefetch_related("items")[:most]
        body = [
            {"id": o.id, "total": o.total, "items": [[i.sku, i.qty, price_of(i.sku)] for i in o.items.all()]}
            for o in rows
        ]
        return JsonResponse(body, safe=False)

    @csrf_exempt
    def new_order(request):
        data = json.loads(request.body)
        with transaction.atomic():
            order = Order.objects.create(customer_id=data["user"], note=data.get("note", ""))
            for sku, qty in data["items"]:
                Item.objects.create(order=order, sku=sku, qty=qty)
                order.total += qty * price_of(sku)
            order.save()
            count = Order.objects.count()
            if count > KEEP:
                old = list(Order.objects.order_by("id").values_list("id", flat=True)[: count - KEEP])
                Order.objects.filter(id__in=old).delete()
        return JsonResponse({"id": order.id}, status=201)

    @csrf_exempt
    def note(request, oid):
        if not Order.objects.filter(pk=oid).update(note=request.POST.get("note", "")[:200]):
            raise Http404
        return HttpResponseRedirect("/")

    def stats(request):
        rows = Customer.objects.annotate(n=Count("orders"), t=Sum("orders__total")).values_list("name", "n", "t")
        return JsonResponse([list(row) for row in rows], safe=False)

    urlpatterns = [
        path("", index),
        path("user/<int:cid>", customer),
        path("api/orders", api_orders),
        path("order", new_order),
        path("order/<int:oid>/note", note),
        path("stats", stats),
    ]
    app = get_wsgi_application()

    def make_database() -> None:
        from django.core.management import call_command

        call_command("migrate", run_syncdb=True, verbosity=0)
        with transaction.atomic():
            customers = [Customer.objects.create(name=f"user{k}") for k in range(CUSTOMERS)]
            for who, total, text, items in seed_rows(random.Random(1)):
                order = Order.objects.create(customer=customers[who], total=total, note=text)
                Item.objects.bulk_create([Item(order=order, sku=sku, qty=qty) for sku, qty in items])


if __name__ == "__main__":
    if os.path.exists(DB):
        os.remove(DB)
    make_database()
