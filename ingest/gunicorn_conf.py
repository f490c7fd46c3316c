"""gunicorn settings for the public receiver: the `web` line of the Procfile loads them with
``gunicorn -c python:ingest.gunicorn_conf`` (bind address and worker count stay on that line,
so ``PARCELHOOK_WEB_PORT`` and ``WEB_CONCURRENCY`` keep working).

Slow clients. Sync workers serve one connection each, so two clients trickling their headers
held both workers and the receiver stopped answering. gevent workers serve each connection
in a greenlet: a stalled client costs a greenlet and a file descriptor, not a worker. What
bounds a connection's life:

- request line and headers: ``keepalive`` seconds in all (gunicorn's gevent worker reads
  them under one ``gevent.Timeout(keepalive)``), then the connection is closed;
- an idle keep-alive connection: ``keepalive`` seconds;
- the body: ``ingest.deadline.BODY_TIMEOUT_S`` from the moment the request reaches the
  application (a ``408``), then at most ``keepalive`` seconds more;
- at most ``worker_connections`` connections per worker; past that, new connections wait
  in the listen backlog. That is the limit of this defence: enough clients renewing stalled
  connections faster than the bounds above still fill every slot, which is why production
  puts a buffering reverse proxy in front (README, *Processes and scaling out*).

The receiver's I/O cooperates with gevent: redis-py and dramatiq's Redis broker use the
patched ``socket``; psycopg 3 (≥ 3.1.14) sees the patched ``select`` and waits cooperatively;
SQLAlchemy's pool uses the patched ``threading`` locks. SQLite is a C library and blocks
the worker while a query runs (short, and the merchant cache keeps most requests off it).
dramatiq's RabbitmqBroker keeps one connection per thread, which under gevent would mean one
per client connection, never closed (dramatiq issue #381): ``workers/rabbitmq_publisher.py``
pools the publishing connections per process instead.
"""

worker_class = "gevent"
worker_connections = 1000
keepalive = 5
# gevent workers only miss their heartbeat when something blocks the whole process
timeout = 30
# long enough for every in-flight request to reach one of the bounds above
graceful_timeout = 20

accesslog = "-"
# %(U)s is the path without the query string: the webhook's ?token= never reaches the log
access_log_format = '%(h)s %(t)s "%(m)s %(U)s" %(s)s %(b)s %(L)s'

# gunicorn ≥ 25 opens a control socket at one fixed per-user path; `web` and `admin` (and any
# second instance on the host) would fight over it, and nothing here uses it.
control_socket_disable = True
