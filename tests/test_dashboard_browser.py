"""The dashboard in a real headless Chromium (Selenium + Debian's chromium and
chromium-driver, installed by ``make setup``), against the real app served by uvicorn on a
free loopback port, over the real Redis (the tests' db) and a real local GitOps remote.

A person logs in with the token, sees the waiting list, opens an improvement and reads its
evidence and its diff, approves one, rejects one with a reason, and pauses auto-approval
(the circuit breaker's flag) with a reason; each action is then checked in Redis and on the
page's timeline. Every page is saved as a screenshot under the test's ``tmp_path`` (and in
``$CORTEX_SCREENSHOTS`` when set).

Skipped, saying why, when selenium, a Chromium or its driver cannot be found.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis as redis_lib

from cortex_school.clients.gitops import GitOpsRepo, ensure_bare_remote
from cortex_school.dashboard import create_app
from cortex_school.dashboard.changes import ChangeViewer
from cortex_school.dashboard.pipeline_view import Consumers, Seen
from cortex_school.models import Improvement, Status
from cortex_school.settings import DashboardSettings
from cortex_school.store import RedisStore
from tests.conftest import ROOT
from tests.test_dashboard import LIMITS, TOKEN, policy_blocked, waiting_for_review

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as EC  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

SEED = ROOT / "examples" / "platform" / "gitops"
QUEUES = ("route", "validate", "implement.architecture", "implement.integration")
PDB_PLAN = ('{"summary": "A PodDisruptionBudget for Qdrant", "planner": "offline", "resources": '
            '[{"kind": "PodDisruptionBudget", "name": "qdrant", "namespace": "cortex-system", '
            '"purpose": "keeps one Qdrant pod through drains", "selector": {"app": "qdrant"}}]}')


def _browser() -> tuple[str, str] | None:
    binary = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
    driver = shutil.which("chromedriver") or next(
        (p for p in ("/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver") if os.path.exists(p)), None)
    return (binary, driver) if binary and driver else None


FOUND = _browser()
pytestmark = pytest.mark.skipif(FOUND is None, reason="no Chromium and chromedriver found: install Debian's "
                                "chromium and chromium-driver (make setup) to run the browser tests")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class World:
    base: str
    store: RedisStore
    broker: redis_lib.Redis
    review: Improvement  # validated with evidence, a stored plan: read, then approved
    policy: Improvement  # sent back by the policy gate: rejected
    shots: list[Path]


@pytest.fixture(scope="module")
def world(settings, tmp_path_factory) -> Iterator[World]:
    import uvicorn

    tmp = tmp_path_factory.mktemp("browser")
    store = RedisStore.from_url(settings.redis.url)
    store.purge()
    broker = redis_lib.Redis.from_url(settings.redis.url)
    broker.delete(*QUEUES)
    review = waiting_for_review(store)
    store.set_fields(review.id, {"plan": PDB_PLAN})
    policy = policy_blocked(store)
    remote = ensure_bare_remote(tmp / "remote.git", "main", SEED)
    changes = ChangeViewer(lambda: GitOpsRepo(remote=str(remote), branch="main", workdir=tmp / "clones",
                                              author="Cortex School <cortex@example.test>"), settings.policy)
    seen = Seen({"route": 1}, ["celery@browser-test"], None)
    app = create_app(store, DashboardSettings(token=TOKEN), limits=LIMITS, queues=QUEUES, changes=changes,
                     consumers=Consumers(lambda: seen, ttl=0), breaker=(3, 3600))
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert time.monotonic() < deadline, "the dashboard did not start"
        time.sleep(0.05)
    try:
        yield World(f"http://127.0.0.1:{port}", store, broker, review, policy, [])
    finally:
        server.should_exit = True
        thread.join(10)
        broker.delete(*QUEUES)
        store.purge()


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    assert FOUND is not None
    binary, driver_path = FOUND
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,1000", "--lang=en-US"):
        options.add_argument(arg)
    try:
        driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=driver_path), options=options)
    except Exception as exc:  # noqa: BLE001 - any failure to start a browser is a skip, said why
        pytest.skip(f"Chromium did not start ({type(exc).__name__}: {str(exc)[:200]})")
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def shot(driver, world: World, tmp_path: Path, name: str) -> Path:
    """A full-page screenshot in tmp_path (and $CORTEX_SCREENSHOTS)."""
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1280, max(800, min(int(height) + 40, 6000)))
    out = tmp_path / f"{name}.png"
    driver.save_screenshot(str(out))
    extra = os.environ.get("CORTEX_SCREENSHOTS")
    if extra:
        Path(extra).mkdir(parents=True, exist_ok=True)
        shutil.copy(out, Path(extra) / out.name)
    driver.set_window_size(1280, 1000)
    world.shots.append(out)
    assert out.stat().st_size > 5000
    return out


def log_in(driver, world: World) -> None:
    driver.get(world.base + "/login")
    driver.find_element(By.NAME, "token").send_keys(TOKEN)
    driver.find_element(By.NAME, "name").send_keys("ana")
    driver.find_element(By.CSS_SELECTOR, "form.login button[type=submit]").click()
    WebDriverWait(driver, 10).until(EC.url_to_be(world.base + "/"))


def body(driver) -> str:
    return driver.find_element(By.TAG_NAME, "body").text


def test_anonymous_visit_shows_only_the_login_page(browser, world, tmp_path):
    """GIVEN no session WHEN the list, an improvement and the pipeline are visited THEN each
    says authentication is required and shows no improvement."""
    browser.delete_all_cookies()
    for path in ("/", f"/improvements/{world.review.id}", "/pipeline", "/api/pipeline"):
        browser.get(world.base + path)
        text = body(browser)
        assert "Authentication required" in text, path
        assert world.review.id not in browser.page_source and world.policy.id not in browser.page_source
    browser.get(world.base + "/")
    shot(browser, world, tmp_path, "01-anonymous")
    browser.find_element(By.LINK_TEXT, "Log in").click()
    assert browser.find_element(By.NAME, "token").get_attribute("type") == "password"
    shot(browser, world, tmp_path, "02-login")


def test_log_in_with_the_token_and_see_the_waiting_list(browser, world, tmp_path):
    """GIVEN the token WHEN a person logs in THEN the waiting list shows both improvements in
    their groups, with their current reasons."""
    log_in(browser, world)
    text = body(browser)
    assert "Needs a person: 2" in text and "signed in as ana (dashboard:" in text
    assert browser.find_element(By.LINK_TEXT, world.review.id)
    assert browser.find_element(By.LINK_TEXT, world.policy.id)
    assert "validation conflict: conflicts with the drain runbook" in text
    assert "uses the mutable tag :latest" in text
    shot(browser, world, tmp_path, "03-needs-a-person")


def test_open_an_improvement_and_read_its_evidence_and_diff(browser, world, tmp_path):
    """GIVEN the list WHEN a person opens the review THEN its finding's evidence and the
    PodDisruptionBudget its plan would add, as a diff against the repository, are on the page."""
    browser.get(world.base + "/")
    browser.find_element(By.LINK_TEXT, world.review.id).click()
    WebDriverWait(browser, 10).until(EC.url_contains(f"/improvements/{world.review.id}"))
    text = body(browser)
    assert "docs/operations.md § Node drains: drains must never block for more than 10 minutes" in text
    assert "Would be committed (the stored plan rendered now; not committed), against main at" in text
    diff = browser.find_element(By.CSS_SELECTOR, "pre.diff").text
    assert "+++ b/apps/cortex-system/qdrant-poddisruptionbudget.yaml" in diff
    assert "+kind: PodDisruptionBudget" in diff and "--- /dev/null" in diff
    added = browser.find_elements(By.CSS_SELECTOR, "pre.diff span.d-add")
    assert len(added) > 10
    shot(browser, world, tmp_path, "04-improvement")


def test_approve_one(browser, world, tmp_path):
    """GIVEN the review's page WHEN the person approves with a reason THEN Redis says approved,
    its implementation is queued, and the timeline shows the person and the reason."""
    browser.get(world.base + f"/improvements/{world.review.id}")
    form = browser.find_element(By.CSS_SELECTOR, f'form[action="/improvements/{world.review.id}/approve"]')
    form.find_element(By.NAME, "reason").send_keys("checked the drain runbook")
    form.find_element(By.CSS_SELECTOR, "button.approve").click()
    WebDriverWait(browser, 10).until(EC.url_contains("?done=approved"))
    assert world.store.get(world.review.id).status is Status.APPROVED
    last = world.store.timeline(world.review.id)[-1]
    assert last.to_status == "approved" and last.actor.startswith("human:ana (dashboard:")
    assert last.reason == "checked the drain runbook"
    assert sum(world.broker.llen(q) for q in QUEUES[2:]) == 1
    text = body(browser)
    assert "Approved: it is planned afresh and implemented." in text
    rows = browser.find_elements(By.CSS_SELECTOR, "table tbody tr")
    assert any("human:ana" in r.text and "checked the drain runbook" in r.text for r in rows)
    shot(browser, world, tmp_path, "05-approved")


def test_reject_one_with_a_reason(browser, world, tmp_path):
    """GIVEN the policy-blocked improvement WHEN the person rejects it with a reason THEN Redis
    says rejected and the timeline shows the person and the reason; the list no longer has it."""
    browser.get(world.base + f"/improvements/{world.policy.id}")
    form = browser.find_element(By.CSS_SELECTOR, f'form[action="/improvements/{world.policy.id}/reject"]')
    form.find_element(By.NAME, "reason").send_keys("we pin image digests; <not> this one")
    form.find_element(By.CSS_SELECTOR, "button.reject").click()
    WebDriverWait(browser, 10).until(EC.url_contains("?done=rejected"))
    assert world.store.get(world.policy.id).status is Status.REJECTED
    last = world.store.timeline(world.policy.id)[-1]
    assert last.to_status == "rejected" and last.actor.startswith("human:ana (")
    assert last.reason == "we pin image digests; <not> this one"
    assert "we pin image digests; <not> this one" in body(browser)  # shown as text, escaped
    shot(browser, world, tmp_path, "06-rejected")
    browser.get(world.base + "/")
    assert "Nothing waits on a person." in body(browser)


def test_pause_auto_approval_with_a_reason_and_see_the_numbers_update(browser, world, tmp_path):
    """GIVEN the pipeline page WHEN the person pauses auto-approval with a reason THEN the flag
    is set in Redis with who and why, the page says PAUSED; and work arriving in a queue nobody
    consumes shows up, labelled, without a reload."""
    browser.get(world.base + "/pipeline")
    text = body(browser)
    assert "Auto-approval is running" in text and "celery@browser-test" in text
    form = browser.find_element(By.ID, "breaker-toggle")
    form.find_element(By.NAME, "reason").send_keys("two bad deploys this morning")
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    WebDriverWait(browser, 10).until(EC.url_contains("?done=flag"))
    assert world.store.flags()["auto_approve_none"] is True
    why = world.store.flag_reason("auto_approve_none") or ""
    assert why.startswith("set to true by ana (dashboard:") and why.endswith(": two bad deploys this morning")
    assert "Auto-approval is PAUSED" in body(browser)
    marker = browser.find_element(By.ID, "as-of")
    world.broker.rpush("validate", "m1", "m2", "m3")
    row = '//tr[@data-queue="validate"]'
    WebDriverWait(browser, 15).until(
        lambda d: d.find_element(By.XPATH, row + '/td[@data-field="depth"]').text == "3")
    assert browser.find_element(By.XPATH, row).get_attribute("class") == "starved"
    assert browser.find_element(By.XPATH, row + '/td[@data-field="state"]').text == "NO CONSUMER"
    assert "Work waiting with no consumer: validate" in body(browser)
    assert browser.find_element(By.ID, "as-of") == marker  # the same element: updated, not reloaded
    shot(browser, world, tmp_path, "07-pipeline")
    world.broker.delete("validate")
