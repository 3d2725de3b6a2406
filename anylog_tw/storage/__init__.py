"""Storage: one async Database interface over SQLite and PostgreSQL (base.py), the node's dbms
registry (engines.Databases).  Empty on purpose: its modules import each other's siblings
(`from anylog_tw.storage import schema`), and a package that imported them back would loop."""
