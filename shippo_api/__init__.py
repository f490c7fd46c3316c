"""Shippo's REST API, outbound: tracking lookups and webhook registration (``client.py``), with
one exception tree (``errors.py``). An adapter like ``notifiers/``: it knows HTTP and Shippo's
wire format, nothing of merchants, the database or the queue."""
