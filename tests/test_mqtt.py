import pytest

from bench.services import wait_until
from edge.wire.mqtt import BrokerURL, Connection, backoff_delay


def test_broker_urls():
    url = BrokerURL.parse("mqtts://cam%40site:s3cret@broker.example:9883")
    assert (url.host, url.port, url.tls, url.username, url.password) == (
        "broker.example",
        9883,
        True,
        "cam@site",
        "s3cret",
    )
    assert "s3cret" not in str(url)
    assert BrokerURL.parse("mqtt://10.0.0.5").port == 1883 and BrokerURL.parse("mqtts://h").port == 8883
    for bad in ("localhost:1883", "http://h", "mqtt://", "mqtt://h:99999", "mqtt://h:0", "mqtt://h/topic"):
        with pytest.raises(ValueError):
            BrokerURL.parse(bad)


def test_backoff_doubles_to_a_cap_with_jitter_in_the_upper_half():
    low = [backoff_delay(n, base_s=0.5, cap_s=30, rand=lambda: 0.0) for n in range(10)]
    high = [backoff_delay(n, base_s=0.5, cap_s=30, rand=lambda: 1.0) for n in range(10)]
    assert low[:4] == [0.25, 0.5, 1.0, 2.0] and high[:4] == [0.5, 1.0, 2.0, 4.0]
    assert max(high) == 30 and low[-1] == 15
    assert backoff_delay(10_000) <= 30  # no overflow however long the outage


def test_connection_comes_back_after_a_broker_restart(broker):
    connects = []
    connection = Connection(
        BrokerURL.parse(broker.url), "reconnect-test", max_backoff_s=1, on_connect=lambda *_: connects.append(1)
    )
    connection.start()
    try:
        wait_until(connection.connected.is_set, 10, "first connection")
        broker.stop()
        wait_until(lambda: not connection.connected.is_set(), 10, "the loss noticed")
        broker.start()
        wait_until(lambda: len(connects) == 2, 20, "reconnection")
    finally:
        connection.stop()
    assert not connection.connected.is_set()
