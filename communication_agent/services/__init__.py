"""Business rules.

One public service call is one unit of work: it changes state, writes its activity-log entry and
commits together, or changes nothing. No FastAPI, Jinja or adapter imports here.
"""
