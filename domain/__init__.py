"""parcelhook's pure core: Shippo payloads, normalization tables, shipment/order state, notification policy.

Standard library only; no I/O and no clock reads (time is always a parameter). Import from the submodules.
"""
