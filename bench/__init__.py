"""Measurements of the connector, in-process: DynamoDB, EventBridge and the
rest of AWS from moto, Stripe from the stand-in on loopback driven by the
real stripe-python client.

    make bench        # or: .venv/bin/python -m bench

Prints plain-text tables of what the webhook pipeline, the scheduled sweep,
the import of an account's subscriptions, the hourly catch-up and the claim
on member routes cost (requests to DynamoDB, Stripe, EventBridge and SQS,
items read, wall time) and checks them against their targets: the exit
status is 1 when a target is missed, 2 when the measurements could not be
made. The functions' cold start (bench/cold_start.py) is measured apart, in
fresh interpreters on the deployment artifact: import time, memory and the
artifact's size.

Counts are what the connector asks for and do not depend on the machine;
wall times are in-process against moto and only compare runs on one machine.
"""
