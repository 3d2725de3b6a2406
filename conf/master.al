# A master node: the network's metadata. Peers push policies to it (blockchain insert ... and master = ...),
# it keeps them in its ledger file and in table blockchain.ledger, and answers their syncs.
#   anylog --home master --name master --script conf/master.al
# Set tcp_port / rest_port in an earlier script (or with --script) to change the ports.

if not !tcp_port then tcp_port = 32048
if not !rest_port then rest_port = 32049

# Authenticated by default (docs/security.md). Peers prove the network key: start the node with
# --network-key-file FILE (or $ANYLOG_NETWORK_KEY in its environment). REST callers log in as users of the
# users file named by $ANYLOG_REST_USERS (or rest_users set in an earlier script); write it with
#   python -m anylog_tw.front.rest_users add rest-users.txt alice admin
if not !rest_users then rest_users = $ANYLOG_REST_USERS
run tcp server where external_ip = !external_ip and external_port = !tcp_port and internal_ip = !ip and bind = false
run rest server where external_ip = !external_ip and external_port = !rest_port and bind = false and users = !rest_users

connect dbms blockchain where type = sqlite
create table ledger where dbms = blockchain

<master = {"master": {"name": !node_name, "company": "anylog-tw", "ip": !external_ip, "local_ip": !ip,
           "port": !tcp_port.int, "rest_port": !rest_port.int}}>
master_id = blockchain get master where name = !node_name bring.first [master][id]
if not !master_id then blockchain push !master
run scheduler 1
