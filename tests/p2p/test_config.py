"""HostConfig validates on construction."""

import pytest

from p2p.config import HostConfig
from p2p.errors import ConfigError


@pytest.mark.unit
def test_defaults_listen_on_localhost_port_zero(tmp_path):
    config = HostConfig(tmp_path)
    assert config.listen == ("/ip4/127.0.0.1/tcp/0",)
    assert config.gossip_heartbeat_seconds == 1.0


@pytest.mark.unit
@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"listen": ["nonsense"]}, "not a multiaddr"),
        ({"listen": ["/ip4/127.0.0.1/udp/1"]}, "TCP"),
        ({"bootstrap": ["/ip4/127.0.0.1/tcp/1"]}, "/p2p/"),
        ({"gossip_heartbeat_seconds": 120}, "heartbeat"),
    ],
)
def test_bad_values_are_config_errors(tmp_path, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        HostConfig(tmp_path, **kwargs)
