"""Message ingestion: MQTT subscribers, the node as an MQTT broker, and REST as a broker.

Every way in ends in one place (`clients.MsgClients.deliver`): a topic and a payload are
matched to a subscription, mapped to (dbms, table, row) by the one mapping language the
operator uses, and handed to the streaming buffers, which become files for the operator.
Facts: `reference/anylog-mqtt-spec.md`; choices and measurements: `docs/mqtt.md`.
"""
