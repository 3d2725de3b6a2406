# An operator node: files in its watch dir (from devices, REST PUT, publishers, HA peers) become rows in its
# local databases, each file traced in almgm.tsd_info. It joins a cluster and replicates with the other
# operators of that cluster (run ha).
#   anylog --home op1 --name op1 --script conf/operator.al
# Before it, set what differs per node, e.g. in a small script of your own:
#   tcp_port = 32148   rest_port = 32149   cluster_name = cluster1   master_node = 127.0.0.1:32048
# With PostgreSQL instead of SQLite, replace the two 'connect dbms' lines, e.g.:
#   connect dbms lsl where type = psql and ip = 127.0.0.1 and port = 5432 and user = anylog and password = "" (a non-superuser role: docs/storage.md)

if not !tcp_port then tcp_port = 32148
if not !rest_port then rest_port = 32149
if not !cluster_name then cluster_name = cluster1
if not !master_node then master_node = 127.0.0.1:32048
if not !company_name then company_name = anylog-tw
if not !default_dbms then default_dbms = lsl


# Authenticated by default (docs/security.md). Peers prove the network key: start the node with
# --network-key-file FILE (or $ANYLOG_NETWORK_KEY in its environment). REST callers log in as users of the
# users file named by $ANYLOG_REST_USERS (or rest_users set in an earlier script); write it with
#   python -m anylog_tw.front.rest_users add rest-users.txt alice admin
if not !rest_users then rest_users = $ANYLOG_REST_USERS
run tcp server where external_ip = !external_ip and external_port = !tcp_port and internal_ip = !ip and bind = false
run rest server where external_ip = !external_ip and external_port = !rest_port and bind = false and users = !rest_users
run blockchain sync where source = master and time = 10 seconds and dest = file and connection = !master_node

connect dbms almgm where type = sqlite
connect dbms !default_dbms where type = sqlite

# The cluster (created by the first operator that names it) and this node's operator policy.
run blockchain sync
<cluster = {"cluster": {"name": !cluster_name, "company": !company_name}}>
cluster_id = blockchain get cluster where name = !cluster_name bring.first [cluster][id]
if not !cluster_id then blockchain insert where policy = !cluster and local = true and master = !master_node
cluster_id = blockchain get cluster where name = !cluster_name bring.first [cluster][id]

<operator = {"operator": {"name": !node_name, "company": !company_name, "ip": !external_ip, "local_ip": !ip,
             "port": !tcp_port.int, "rest_port": !rest_port.int, "cluster": !cluster_id}}>
operator_id = blockchain get operator where name = !node_name bring.first [operator][id]
if not !operator_id then blockchain insert where policy = !operator and local = true and master = !master_node
operator_id = blockchain get operator where name = !node_name bring.first [operator][id]

run operator where policy = !operator_id and threads = 2 and master_node = !master_node
run ha where start_date = -7d
run scheduler 1
