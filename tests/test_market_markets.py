"""``onetools.market.markets`` on both backends (embedded store and XML-RPC)."""

from __future__ import annotations

import pytest

from onetools.market import markets
from onetools.market.markets import MarketError
from onetools.one.api import MARKET, OneApi, Permissions
from onetools.one.errors import OneError

HTTP = 'NAME = "web"\nMARKET_MAD = "http"\nBASE_URL = "http://f/"\nPUBLIC_DIR = "/var/www"\n'
S3 = (
    'NAME = "bucket"\nMARKET_MAD = "s3"\nACCESS_KEY_ID = "k"\nSECRET_ACCESS_KEY = "s"\n'
    'REGION = "eu"\nBUCKET = "b"\n'
)


def test_create_list_show(one_api: OneApi) -> None:
    web = markets.create_market(one_api, HTTP)
    bucket = markets.create_market(one_api, S3)
    assert (web, bucket) == (100, 101)
    assert [m.name for m in markets.list_markets(one_api)] == [
        "OpenNebula Public",
        "Linux Containers",
        "web",
        "bucket",
    ]
    shown = markets.show_market(one_api, web)
    assert shown.text("TEMPLATE/BASE_URL") == "http://f/"
    assert markets.market_mad(shown) == "http"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('NAME="x"\n', "No marketplace driver (MARKET_MAD) in template."),
        ('NAME="x"\nMARKET_MAD="http"\nBASE_URL="u"\n', '"PUBLIC_DIR" attribute'),
        ('NAME="x"\nMARKET_MAD="s3"\nACCESS_KEY_ID="a"\n', '"SECRET_ACCESS_KEY" attribute'),
        ('NAME="x"\nMARKET_MAD="docker_registry"\n', '"BASE_URL" attribute'),
        ('NAME="x"\nMARKET_MAD="ftp"\n', 'MARKET_MAD_CONF named "ftp"'),
        ('MARKET_MAD="one"\n', "No NAME"),
    ],
)
def test_required_attributes(one_api: OneApi, text: str, message: str) -> None:
    with pytest.raises(MarketError, match=message.replace("(", r"\(").replace(")", r"\)")):
        markets.create_market(one_api, text)
    assert len(markets.list_markets(one_api)) == 2


def test_update_checks_the_new_driver(one_api: OneApi) -> None:
    web = markets.create_market(one_api, HTTP)
    with pytest.raises(MarketError, match='"ACCESS_KEY_ID"'):
        markets.update_market(one_api, web, 'MARKET_MAD = "s3"', append=True)
    markets.update_market(one_api, web, 'PUBLIC_DIR = "/srv"', append=True)
    assert markets.show_market(one_api, web).text("TEMPLATE/PUBLIC_DIR") == "/srv"
    with pytest.raises(MarketError, match='"BASE_URL"'):
        markets.update_market(one_api, web, 'MARKET_MAD = "http"\nPUBLIC_DIR = "/x"')


def test_delete_refuses_a_private_market_with_apps(one_api: OneApi) -> None:
    web = markets.create_market(one_api, HTTP)
    one_api.allocate_marketapp(
        'NAME = "tpl"\nORIGIN_ID = "-1"\nTYPE = "VMTEMPLATE"\nAPPTEMPLATE64 = "Q1BVPTE="', web
    )
    failures = markets.delete_markets(one_api, [web])
    assert f"Marketplace {web} is not empty." in failures[web].message
    assert markets.show_market(one_api, web).name == "web"
    empty = markets.create_market(one_api, S3)
    assert markets.delete_markets(one_api, [empty, 999]).keys() == {999}
    with pytest.raises(OneError):
        one_api.info(MARKET, empty)


def test_rename_chown_chmod_enable(one_api: OneApi) -> None:
    web = markets.create_market(one_api, HTTP)
    markets.rename_market(one_api, web, "site")
    assert markets.chmod_markets(one_api, [web], Permissions.from_octet("640")) == {}
    assert markets.chown_markets(one_api, [web], -1, 1) == {}
    shown = markets.show_market(one_api, web)
    assert (shown.name, shown.gid) == ("site", 1)
    assert shown.permissions is not None and shown.permissions.octet() == "640"
    assert markets.enable_markets(one_api, [web], False) == {}
    assert markets.show_market(one_api, web).int("STATE") == 1
    assert markets.enable_markets(one_api, [web], True) == {}
    assert markets.show_market(one_api, web).int("STATE") == 0
