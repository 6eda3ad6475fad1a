"""A shop's customers, orders and items (bench/orm_apps.py, Django)."""

from __future__ import annotations

from django.db import models


class Customer(models.Model):
    name = models.CharField(max_length=50)


class Order(models.Model):
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="orders")
    total = models.IntegerField(default=0)
    note = models.CharField(max_length=200, default="")


class Item(models.Model):
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="items")
    sku = models.CharField(max_length=20)
    qty = models.IntegerField()
