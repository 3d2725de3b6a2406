"""A device for the tests: publishes N numbered messages at QoS 1 and does not give up on any.

`python -m tests.mqtt_publisher PORT TOPIC N [PER_SECOND]` publishes {"id": i, "value": i * 1.5}
for i in 0..N-1 through paho with a persistent session, riding out broker restarts (paho keeps
what is not acknowledged and sends it again after reconnecting), and exits 0 once every message
is acknowledged (1 after 120 seconds).
"""

from __future__ import annotations

import json
import sys
import time

import paho.mqtt.client as mqtt


def main(port: int, topic: str, count: int, per_second: float) -> int:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-publisher-{topic}", clean_session=False)
    client.max_queued_messages_set(0)
    client.max_inflight_messages_set(20)
    client.reconnect_delay_set(0.2, 1)
    acked = set()
    client.on_publish = lambda c, u, mid, reason, props: acked.add(mid)
    client.connect_async("127.0.0.1", port, keepalive=10)
    client.loop_start()
    infos = []
    start = time.monotonic()
    for i in range(count):
        infos.append(client.publish(topic, json.dumps({"id": i, "value": i * 1.5}), qos=1))
        if per_second:
            delay = start + (i + 1) / per_second - time.monotonic()
            if delay > 0:
                time.sleep(delay)
    deadline = time.monotonic() + 120
    mids = {info.mid for info in infos}  # paho's mids wrap at 65535: keep N below that
    while not mids <= acked:
        if time.monotonic() > deadline:
            return 1
        time.sleep(0.05)
    client.disconnect()
    client.loop_stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), float(sys.argv[4]) if len(sys.argv) > 4 else 0))
