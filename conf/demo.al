# A demo node on the embedded default (SQLite): one process that is its own master, operator and
# query node, data in ./anylog-data. Started by `make run`; each line is an AnyLog command, and the
# script can run again on the same home (it only inserts what the ledger does not have yet).

# Where users and peers reach it: telnet console, peer TCP, REST, all on loopback. Without credentials
# the console is the node's administrator and REST callers read and write but never administer
# (docs/security.md); on another interface both would refuse to start without authentication.
run console where ip = 127.0.0.1 and port = 32051
run tcp server where external_ip = 127.0.0.1 and external_port = 32048 and bind = true
run rest server where external_ip = 127.0.0.1 and external_port = 32049 and bind = true

# Databases: almgm keeps the tsd_info file log, demo keeps the data.
connect dbms almgm where type = sqlite
connect dbms demo where type = sqlite

# The metadata: one cluster and this node as its operator, in the local ledger.
<cluster = {"cluster": {"name": "demo-cluster", "company": "anylog-tw"}}>
cluster_id = blockchain get cluster where name = demo-cluster bring.first [cluster][id]
if not !cluster_id then blockchain insert where policy = !cluster and local = true
cluster_id = blockchain get cluster where name = demo-cluster bring.first [cluster][id]

<operator = {"operator": {"name": !node_name, "company": "anylog-tw", "ip": "127.0.0.1",
             "port": 32048, "rest_port": 32049, "cluster": !cluster_id}}>
operator_id = blockchain get operator where name = !node_name bring.first [operator][id]
if not !operator_id then blockchain insert where policy = !operator and local = true
operator_id = blockchain get operator where name = !node_name bring.first [operator][id]

# Files dropped in !watch_dir (or PUT over REST) become rows in demo, traced in almgm.tsd_info.
run operator where policy = !operator_id and threads = 2
run scheduler 1
