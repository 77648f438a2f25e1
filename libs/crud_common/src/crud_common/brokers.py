"""RABBITMQ_HOST as the gateway and billing read it: one broker or the nodes of a cluster."""


def broker_addresses(hosts: str, default_port: int) -> list[tuple[str, int]]:
    """`"a, b:5673"` -> [("a", default_port), ("b", 5673)]; ValueError when empty or malformed."""
    addresses = []
    for entry in (part.strip() for part in hosts.split(",")):
        if not entry:
            continue
        host, colon, port = entry.rpartition(":") if ":" in entry else (entry, "", "")
        if colon and not (port.isdigit() and 0 < int(port) < 65536):
            raise ValueError(f"{entry!r}: expected host or host:port (port 1-65535)")
        if not host or any(c in host for c in "/@ "):
            raise ValueError(f"{entry!r}: expected host or host:port")
        addresses.append((host, int(port) if colon else default_port))
    if not addresses:
        raise ValueError("expected at least one broker host")
    return addresses
