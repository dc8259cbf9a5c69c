#!/usr/bin/env python3
"""A paho-mqtt 2.x client driven line by line, for tests/interop.rs.

It connects with the options given on the command line, then reads one JSON command per
line from standard input and reports what happens as one JSON event per line on standard
output:

    {"event": "connack", "session_present": bool, "reason_code": int}
    {"event": "suback", "reason_codes": [int, ...]}           after {"cmd": "sub", "filter": F, "qos": Q}
    {"event": "published", "mid": int}                         after {"cmd": "pub", "topic": T, "payload": P,
                                                                       "qos": Q, "retain": bool}
                                                               (QoS 1/2: once acknowledged)
    {"event": "message", "topic": T, "payload": P, "qos": Q, "retain": bool}
    {"event": "disconnected"}                                  after {"cmd": "disconnect"}: a normal
                                                               DISCONNECT (0x00), then it exits 0
    {"event": "connection_lost", "reason_code": int}           the broker closed the connection; exits 2
    {"event": "error", "message": str}                         then it exits 1

--transport websockets speaks MQTT over WebSocket (path --ws-path, default /mqtt); --cafile
turns TLS on (mqtts://, or wss:// with websockets), trusting that CA's certificates.

It never reconnects on its own: one process is one network connection. End of input, or a
step that takes longer than --timeout seconds, ends it without a DISCONNECT (exit 3), like a
crash; the tests end it with SIGKILL to drop the connection without a DISCONNECT (a will).
"""

import argparse
import json
import os
import sys
import threading

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

_out = threading.Lock()


def emit(**event):
    with _out:
        sys.stdout.write(json.dumps(event) + "\n")
        sys.stdout.flush()


def fail(message, code=1):
    emit(event="error", message=message)
    os._exit(code)


def code_of(reason_code):
    """A reason code (paho's ReasonCode, or an int for 3.1.1 in some callbacks) as an int."""
    return reason_code.value if hasattr(reason_code, "value") else int(reason_code)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--id", required=True, help="Client Identifier")
    parser.add_argument("--version", choices=["5", "3.1.1"], default="5")
    parser.add_argument(
        "--clean",
        type=int,
        choices=[0, 1],
        default=1,
        help="Clean Start (5.0) / Clean Session (3.1.1)",
    )
    parser.add_argument("--session-expiry", type=int, help="Session Expiry Interval (5.0)")
    parser.add_argument("--keepalive", type=int, default=60)
    parser.add_argument("--transport", choices=["tcp", "websockets"], default="tcp")
    parser.add_argument("--ws-path", default="/mqtt", help="the WebSocket path")
    parser.add_argument("--cafile", help="TLS, trusting the CA certificates in this PEM file")
    parser.add_argument("--username")
    parser.add_argument("--password")
    parser.add_argument("--will-topic")
    parser.add_argument("--will-payload", default="")
    parser.add_argument("--will-qos", type=int, default=0)
    parser.add_argument("--will-retain", action="store_true")
    parser.add_argument("--will-delay", type=int, help="Will Delay Interval (5.0)")
    parser.add_argument(
        "--timeout", type=float, default=30.0, help="longest wait for any one step, in seconds"
    )
    args = parser.parse_args()

    v5 = args.version == "5"
    if v5:
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=args.id,
            protocol=mqtt.MQTTv5,
            transport=args.transport,
        )
    else:
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=args.id,
            protocol=mqtt.MQTTv311,
            clean_session=bool(args.clean),
            transport=args.transport,
        )
    if args.transport == "websockets":
        client.ws_set_options(path=args.ws_path)
    if args.cafile is not None:
        client.tls_set(ca_certs=args.cafile)

    if args.username is not None:
        client.username_pw_set(args.username, args.password)

    if args.will_topic is not None:
        will_properties = None
        if v5 and args.will_delay is not None:
            will_properties = Properties(PacketTypes.WILLMESSAGE)
            will_properties.WillDelayInterval = args.will_delay
        client.will_set(
            args.will_topic,
            args.will_payload.encode(),
            qos=args.will_qos,
            retain=args.will_retain,
            properties=will_properties,
        )

    connected = threading.Event()
    subscribed = {}  # mid -> Event
    published = {}  # mid -> Event
    suback_codes = {}
    lock = threading.Lock()
    leaving = threading.Event()

    def on_connect(_client, _userdata, flags, reason_code, _properties):
        emit(
            event="connack",
            session_present=bool(flags.session_present),
            reason_code=code_of(reason_code),
        )
        if code_of(reason_code) != 0:
            os._exit(4)
        connected.set()

    def on_subscribe(_client, _userdata, mid, reason_codes, _properties):
        with lock:
            suback_codes[mid] = [code_of(rc) for rc in reason_codes]
            event = subscribed.setdefault(mid, threading.Event())
        event.set()

    def on_publish(_client, _userdata, mid, _reason_code, _properties):
        with lock:
            event = published.setdefault(mid, threading.Event())
        event.set()

    def on_message(_client, _userdata, message):
        emit(
            event="message",
            topic=message.topic,
            payload=message.payload.decode("utf-8", "replace"),
            qos=message.qos,
            retain=bool(message.retain),
        )

    def on_disconnect(_client, _userdata, _flags, reason_code, _properties):
        if leaving.is_set():
            return
        emit(event="connection_lost", reason_code=code_of(reason_code))
        os._exit(2)

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_publish = on_publish
    client.on_message = on_message
    client.on_disconnect = on_disconnect

    connect_properties = None
    if v5 and args.session_expiry is not None:
        connect_properties = Properties(PacketTypes.CONNECT)
        connect_properties.SessionExpiryInterval = args.session_expiry
    try:
        if v5:
            client.connect(
                args.host,
                args.port,
                keepalive=args.keepalive,
                clean_start=bool(args.clean),
                properties=connect_properties,
            )
        else:
            client.connect(args.host, args.port, keepalive=args.keepalive)
    except OSError as e:
        fail(f"cannot connect: {e}")
    client.loop_start()
    if not connected.wait(args.timeout):
        fail("no CONNACK in time", 3)

    def wait_for(table, mid, what):
        with lock:
            event = table.setdefault(mid, threading.Event())
        if not event.wait(args.timeout):
            fail(f"no {what} for message id {mid} in time", 3)

    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        command = json.loads(line)
        cmd = command["cmd"]
        if cmd == "sub":
            result, mid = client.subscribe(command["filter"], qos=command.get("qos", 0))
            if result != mqtt.MQTT_ERR_SUCCESS:
                fail(f"subscribe failed: {mqtt.error_string(result)}")
            wait_for(subscribed, mid, "SUBACK")
            with lock:
                codes = suback_codes.pop(mid)
            emit(event="suback", reason_codes=codes)
        elif cmd == "pub":
            info = client.publish(
                command["topic"],
                command.get("payload", "").encode(),
                qos=command.get("qos", 0),
                retain=command.get("retain", False),
            )
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                fail(f"publish failed: {mqtt.error_string(info.rc)}")
            # QoS 0: on_publish once written; QoS 1/2: once acknowledged.
            wait_for(published, info.mid, "acknowledgement")
            emit(event="published", mid=info.mid)
        elif cmd == "disconnect":
            leaving.set()
            client.disconnect()
            client.loop_stop()
            emit(event="disconnected")
            os._exit(0)
        else:
            fail(f"unknown command {cmd!r}")
    # End of input: gone without a DISCONNECT.
    os._exit(3)


if __name__ == "__main__":
    main()
