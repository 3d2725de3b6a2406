# A publisher node: files in its watch dir (from devices or REST PUT) are shipped to the operators that host
# their tables, found in the metadata (see docs/publisher.md for the routing rule).
#   anylog --home pub --name pub --script conf/publisher.al

if not !tcp_port then tcp_port = 32248
if not !rest_port then rest_port = 32249
if not !master_node then master_node = 127.0.0.1:32048


# Authenticated by default (docs/security.md). Peers prove the network key: start the node with
# --network-key-file FILE (or $ANYLOG_NETWORK_KEY in its environment). REST callers log in as users of the
# users file named by $ANYLOG_REST_USERS (or rest_users set in an earlier script); write it with
#   python -m anylog_tw.front.rest_users add rest-users.txt alice admin
if not !rest_users then rest_users = $ANYLOG_REST_USERS
run tcp server where external_ip = !external_ip and external_port = !tcp_port and internal_ip = !ip and bind = false
run rest server where external_ip = !external_ip and external_port = !rest_port and bind = false and users = !rest_users
run blockchain sync where source = master and time = 10 seconds and dest = file and connection = !master_node

run blockchain sync
<publisher = {"publisher": {"name": !node_name, "company": "anylog-tw", "ip": !external_ip, "local_ip": !ip,
              "port": !tcp_port.int, "rest_port": !rest_port.int}}>
publisher_id = blockchain get publisher where name = !node_name bring.first [publisher][id]
if not !publisher_id then blockchain insert where policy = !publisher and local = true and master = !master_node

run publisher where compress_json = true and master_node = !master_node
