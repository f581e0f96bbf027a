"""The lineage page in headless Chromium, and the auditor exports of the same graph."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import service_support as support

from custody.provenance.integrations.exports import to_cyclonedx, to_openlineage, to_prov
from custody.provenance.ledger.store import Ledger
from custody.provenance.verification.lineage import lineage

SAMPLES = Path(__file__).resolve().parents[2] / "sample_data"


@pytest.fixture
def recorded(ws, cli, make_file) -> Any:  # type: ignore[no-untyped-def]
    """data@1 → base@1 (derived) ; data@1 + evil@1 (flagged pickle) → clf@1."""
    cli("record", SAMPLES / "dataset-v1.parquet", "--name", "data", "--kind", "dataset",
        cwd=ws.root).expect(0)
    cli("record", make_file(ws.root / "base.bin", b"base"), "--name", "base", "--kind", "model",
        "--input", "data@1", "--activity", "derived_from", cwd=ws.root).expect(0)
    cli("record", SAMPLES / "malicious.pkl", "--name", "evil", "--kind", "dataset",
        "--allow-flagged", cwd=ws.root).expect(0)
    cli("record", make_file(ws.root / "clf.bin", b"clf <script>alert(1)</script>"), "--name",
        "clf", "--kind", "model", "--input", "base@1", "--input", "evil@1", "--allow-flagged",
        cwd=ws.root).expect(0)
    return ws


@pytest.mark.parametrize("backend", ["sqlite"], indirect=False)
def test_exports(recorded: Any) -> None:
    ledger = Ledger.open(recorded.url)
    try:
        graph = lineage(ledger, "clf@1", upstream=True, depth=5)
    finally:
        ledger.close()
    events = to_openlineage(graph)
    assert {e["job"]["name"] for e in events} == {"trained_on:clf@1", "derived_from:base@1"}
    for event in events:
        assert event["eventType"] == "COMPLETE" and event["schemaURL"].startswith(
            "https://openlineage.io/spec/")
        for ds in event["inputs"] + event["outputs"]:
            facet = ds["facets"]["custody_digest"]
            assert facet["algorithm"] in ("sha256", "sha256-manifest-v1") and len(
                facet["value"]) == 64 and facet["_producer"]
    bom = to_cyclonedx(graph)
    assert (bom["bomFormat"], bom["specVersion"]) == ("CycloneDX", "1.6")
    assert bom["metadata"]["component"]["type"] == "machine-learning-model"
    assert bom["metadata"]["component"]["modelCard"]["modelParameters"]["datasets"] == [
        {"ref": "evil@1"}]
    by_ref = {c["bom-ref"]: c for c in bom["components"]}
    assert by_ref["data@1"]["type"] == "data" and by_ref["evil@1"]["type"] == "data"
    assert by_ref["base@1"]["pedigree"]["ancestors"][0]["name"] == "data"
    assert by_ref["evil@1"]["hashes"][0]["alg"] == "SHA-256"
    deps = {d["ref"]: d["dependsOn"] for d in bom["dependencies"]}
    assert deps["clf@1"] == ["base@1", "evil@1"] and deps["data@1"] == []
    verdicts = {p["value"] for c in bom["components"] for p in c["properties"]
                if p["name"] == "custody:scan_verdict"}
    assert verdicts == {"clean", "flagged"}
    prov = to_prov(graph)
    assert prov["@context"]["prov"] == "http://www.w3.org/ns/prov#"
    items = {i["@id"]: i for i in prov["@graph"]}
    clf = items["custody:artifact/clf@1"]
    assert "prov:Entity" in clf["@type"]
    assert {d["@id"] for d in clf["prov:wasDerivedFrom"]} == {"custody:artifact/base@1",
                                                              "custody:artifact/evil@1"}
    activity = items[clf["prov:wasGeneratedBy"]["@id"]]
    assert activity["@type"] == "prov:Activity" and len(activity["prov:used"]) == 2
    assert items[clf["prov:wasAttributedTo"]["@id"]]["@type"] == "prov:Agent"


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which(
        "google-chrome")


@pytest.fixture
def browser() -> Iterator[Any]:
    binary, driver_path = chromium(), shutil.which("chromedriver")
    if binary is None or driver_path is None:
        pytest.skip("headless Chromium not installed (apt-get install chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-extensions", "--no-first-run",
                 "--disable-sync", "--disable-component-update", "--disable-default-apps"):
        options.add_argument(flag)
    service = webdriver.ChromeService(executable_path=driver_path)
    driver = webdriver.Chrome(options=options, service=service)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.mark.parametrize("backend", ["sqlite"], indirect=False)
def test_lineage_page_in_chromium(recorded: Any, browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    tokens = support.make_tokens(recorded.url)
    with support.running_server(recorded.root) as base:
        browser.get(base + "/ui/lineage/clf@1")
        assert "bearer token is required" in browser.page_source  # no token, no page
        browser.execute_cdp_cmd("Network.enable", {})
        browser.execute_cdp_cmd("Network.setExtraHTTPHeaders",
                                {"headers": {"Authorization": f"Bearer {tokens['reader']}"}})
        browser.get(base + "/ui/lineage/clf@1?depth=5")
        WebDriverWait(browser, 20).until(
            lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-rendered"))
        assert browser.title == "Lineage of clf@1 (upstream)"
        nodes = browser.find_elements(By.CSS_SELECTOR, "svg#graph g.node")
        assert sorted(n.get_attribute("data-ref") for n in nodes) == [
            "base@1", "clf@1", "data@1", "evil@1"]
        assert len(browser.find_elements(By.CSS_SELECTOR, "svg#graph line.edge")) == 3
        assert all(n.size["width"] > 100 for n in nodes)  # laid out and drawn
        rows = {r.get_attribute("data-ref"): [c.text for c in
                                              r.find_elements(By.TAG_NAME, "td")]
                for r in browser.find_elements(By.CSS_SELECTOR, "#nodes tbody tr")}
        assert set(rows) == {"base@1", "clf@1", "data@1", "evil@1"}
        assert rows["data@1"][3] == "verified" and rows["base@1"][3] == "verified"
        assert rows["evil@1"][3].startswith("refused [scan.flagged]")
        assert rows["clf@1"][3].startswith("refused [chain.flagged]")
        assert rows["clf@1"][2].startswith("key:")  # the signer
        assert int(rows["evil@1"][4]) >= 1  # its findings
        details = browser.find_element(By.ID, "details").text
        assert "clf@1" in details and "chain.flagged" in details  # the root is shown at load
        evil = next(n for n in nodes if n.get_attribute("data-ref") == "evil@1")
        evil.click()
        findings = browser.find_elements(By.CSS_SELECTOR, "#details ul.findings li")
        assert findings and any("pickle" in f.text.lower() for f in findings), [
            f.text for f in findings]
        assert "selected" in evil.get_attribute("class")
        logs = browser.get_log("browser")
        # no script or CSP errors (network ones are the 401 above and the favicon's 404)
        assert not [e for e in logs if e["level"] == "SEVERE" and e["source"] != "network"], logs
        assert not browser.find_elements(By.XPATH, "//script[contains(., 'alert(1)')]") or \
            "<script>alert" not in browser.page_source.split("graph-data")[0]
