"""webhook_policy: an IPv6 address that carries an IPv4 one (IPv4-mapped, 6to4, NAT64's
well-known prefix) is judged by the IPv4 address it reaches."""

from __future__ import annotations

import ipaddress

import pytest

from reportgrid.webhook_policy import address_problem, embedded_ipv4, url_problem


@pytest.mark.parametrize(
    ("address", "embedded"),
    [
        ("64:ff9b::a00:1", "10.0.0.1"),  # NAT64 (RFC 6052), 64:ff9b::10.0.0.1
        ("64:ff9b::a9fe:a9fe", "169.254.169.254"),
        ("2002:a00:1::", "10.0.0.1"),  # 6to4 (RFC 3056)
        ("2002:7f00:1:1::1", "127.0.0.1"),
        ("::ffff:a00:1", "10.0.0.1"),  # IPv4-mapped
    ],
)
def test_an_embedded_private_ipv4_is_refused_as_itself(address: str, embedded: str) -> None:
    six = ipaddress.IPv6Address(address)
    assert embedded_ipv4(six) == ipaddress.IPv4Address(embedded)
    problem = address_problem(six)
    assert problem is not None
    assert embedded in problem
    # Loopback allowed (the local region) is for 127.0.0.1 itself, never an embedding.
    assert address_problem(six, allow_loopback=True) is not None


@pytest.mark.parametrize("address", ["64:ff9b::808:808", "2002:808:808::1", "::ffff:808:808"])
def test_an_embedded_public_ipv4_is_allowed(address: str) -> None:
    assert address_problem(ipaddress.IPv6Address(address)) is None


def test_the_nat64_local_use_prefix_is_not_unwrapped_and_is_refused() -> None:
    address = ipaddress.IPv6Address("64:ff9b:1::808:808")  # RFC 8215, not global
    assert embedded_ipv4(address) is None
    assert address_problem(address) is not None


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("https://[64:ff9b::a00:1]/hook", "10.0.0.1 is a private address"),
        ("https://[64:ff9b::7f00:1]/hook", "127.0.0.1 is a loopback address"),
        ("https://[2002:a9fe:a9fe::]/hook", "instance metadata service"),
    ],
)
def test_a_url_with_an_embedding_literal_names_the_ipv4_it_reaches(url: str, words: str) -> None:
    problem = url_problem(url)
    assert problem is not None
    assert words in problem


def test_a_url_with_a_public_nat64_literal_is_allowed() -> None:
    assert url_problem("https://[64:ff9b::808:808]/hook") is None
