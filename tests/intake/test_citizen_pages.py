"""The citizen pages (`/`, `/lacak`; services.intake.web) in a real browser — Debian's chromium through its
chromedriver — against a real `lapor up` process: a report filed with the form and its receipt, what the server
refuses shown beside its field with nothing filed, and tracking that shows the status and the agency's public
follow-ups as text. Without chromium and chromium-driver the browser tests are skipped, saying so, unless
LAPOR_REQUIRE_BACKENDS names `browser` (.ci/run installs both and demands it)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx2
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select, WebDriverWait

from lapor.auth import TokenService
from lapor.clock import SystemClock
from lapor.principal import NATIONAL_ADMIN_AGENCY, Role
from lapor.settings import load_settings
from lapor.store import open_store
from schemas.events import ComplaintEscalated
from tests.conftest import backend_unavailable
from tests.platform._servers import Server, lapor

WAIT = 20  # seconds a page may take to show an answer

REPORT = {"title": "Jalan berlubang", "body": "Lubang besar di Jl. El Tari depan kantor lurah.", "region_code": "53.71"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp_path = tmp_path_factory.mktemp("pages")
    with lapor(tmp_path, "up", "--data", str(tmp_path / "var"), name="pages", module="lapor.cli") as running:
        yield running


@contextmanager
def chromium(*, javascript: bool = True) -> Iterator[WebDriver]:
    binary, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (binary and driver):
        backend_unavailable("browser", "Debian's chromium and chromium-driver are not installed (.ci/run installs)")
    options = Options()
    options.binary_location = binary
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--lang=id"):
        options.add_argument(argument)
    if not javascript:
        options.add_experimental_option("prefs", {"profile.managed_default_content_settings.javascript": 2})
    session = webdriver.Chrome(service=Service(driver), options=options)
    try:
        yield session
    finally:
        session.quit()


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    with chromium() as session:
        yield session


def token(server: Server, role: Role, **scope: Any) -> dict[str, str]:
    data = Path(server.process.args[server.process.args.index("--data") + 1])
    signed = TokenService(load_settings(data=data).signing_secret(), SystemClock()).issue(role, **scope)
    return {"Authorization": f"Bearer {signed}"}


def head_position(server: Server) -> float:
    return server.metric("lapor_store_head_position")


def shown(browser: WebDriver, element_id: str) -> str:
    """The element's text once the page shows it."""
    element = browser.find_element(By.ID, element_id)
    WebDriverWait(browser, WAIT).until(lambda _: element.is_displayed() and element.text.strip())
    return element.text


# -- the pages over HTTP ------------------------------------------------------------------------------------


def test_the_pages_are_served_with_a_policy_that_allows_only_this_origin(server):
    page = server.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    for directive in ("default-src 'none'", "script-src 'self'", "frame-ancestors 'none'", "form-action 'self'"):
        assert directive in policy
    assert '<option value="53.71">Kota Kupang</option>' in page.text
    assert '<option value="53">Provinsi Nusa Tenggara Timur</option>' in page.text
    assert server.get("/lacak").status_code == 200
    shared = server.get("/", params={"utm_source": "whatsapp", "fbclid": "x1"})  # a link as shared: any query
    assert (shared.status_code, shared.text) == (200, page.text)
    assert httpx2.head(server.url + "/", timeout=10).status_code == 200
    assert server.get("/static/lapor.js").headers["content-type"].startswith("text/javascript")
    missing = server.get("/static/..%2fapi.py")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    assert "/" not in server.get("/openapi.json").json()["paths"]  # pages, not API


# -- in the browser -----------------------------------------------------------------------------------------


def form_filled(browser: WebDriver, server: Server, title: str, body: str) -> None:
    """The report form of Kota Kupang filled in, not sent yet."""
    browser.get(server.url + "/")
    browser.find_element(By.ID, "title").send_keys(title)
    browser.find_element(By.ID, "body").send_keys(body)
    Select(browser.find_element(By.ID, "region_code")).select_by_value("53.71")


def filed_with_the_form(browser: WebDriver, server: Server, title: str, body: str, name: str) -> tuple[str, str]:
    """A confidential report of Kota Kupang filed with the form under the reporter's `name`: its receipt's
    (tracking id, reporter token)."""
    form_filled(browser, server, title, body)
    browser.find_element(By.ID, "reporter-name").send_keys(name)
    browser.find_element(By.ID, "confidential").click()
    browser.find_element(By.ID, "submit").click()
    return shown(browser, "tracking-id"), shown(browser, "reporter-token")


def test_a_citizen_files_a_confidential_report_with_the_form_and_its_receipt_opens_it(server, browser):
    tracking_id, reporter_token = filed_with_the_form(
        browser, server, "Puskesmas tutup saat jam layanan", "Puskesmas Oebobo tutup pukul 10 pagi pada hari kerja.",
        "Maria Lay",
    )
    assert not browser.find_element(By.ID, "lapor-form").is_displayed()
    # The form that held the focus is gone: the focus moves to the receipt, so a screen reader reads it out and the
    # keyboard goes on from there (not from the top of the page).
    focused = browser.switch_to.active_element
    assert focused.text == "Laporan Anda telah diterima"
    assert focused.find_element(By.XPATH, "ancestor::section").get_attribute("id") == "receipt"

    assert server.get(f"/api/complaints/{tracking_id}").status_code == 404  # rahasia: not for the public
    view = server.get(f"/api/complaints/{tracking_id}", headers={"X-Reporter-Token": reporter_token}).json()
    assert (view["title"], view["region_code"], view["confidential"]) == (
        "Puskesmas tutup saat jam layanan", "53.71", True
    )
    assert "Maria Lay" not in str(view)  # the identity is the national admin's to see

    browser.find_element(By.ID, "track-link").click()  # /lacak#<id>: the tracking page looks it up at once
    assert "tidak ditemukan" in shown(browser, "lacak-error")  # confidential, and no token given yet
    browser.find_element(By.ID, "track-token").send_keys(reporter_token)
    browser.find_element(By.CSS_SELECTOR, "#lacak-form button").click()
    assert shown(browser, "report-status") == "Menunggu verifikasi"
    assert shown(browser, "report-title") == "Puskesmas tutup saat jam layanan"
    # The report found takes the focus (its section appears already filled, which a screen reader does not read).
    assert browser.switch_to.active_element.get_attribute("id") == "report-title"


# Replaces the page's fetch once: the request reaches the server, which files and answers it, and the answer is
# lost on the way back (a connection dropped at the wrong moment).
LOSE_THE_NEXT_ANSWER = """
const realFetch = window.fetch;
window.fetch = async (...request) => {
  window.fetch = realFetch;
  await realFetch(...request);
  throw new TypeError("Failed to fetch");
};
"""


def filed_with_its_answer_lost(browser: WebDriver, server: Server, title: str, body: str) -> float:
    """A report sent with the form, filed, and its answer lost: the store's head before it."""
    form_filled(browser, server, title, body)
    before = head_position(server)
    browser.execute_script(LOSE_THE_NEXT_ANSWER)
    browser.find_element(By.ID, "submit").click()
    assert shown(browser, "form-error").startswith("Laporan belum terkirim")
    assert head_position(server) == before + 1  # filed all the same
    return before


def receipt_body(browser: WebDriver, server: Server) -> str:
    """The body of the report the page's receipt names, as its reporter sees it."""
    tracking_id, reporter_token = shown(browser, "tracking-id"), shown(browser, "reporter-token")
    return server.get(f"/api/complaints/{tracking_id}", headers={"X-Reporter-Token": reporter_token}).json()["body"]


def test_a_report_whose_answer_was_lost_is_filed_once_though_changed_before_sending_again(server, browser):
    before = filed_with_its_answer_lost(browser, server, "Sampah menumpuk", "Sampah di Pasar Oeba menumpuk.")
    browser.find_element(By.ID, "body").send_keys(" Sudah tiga minggu.")  # the citizen adds a line, sends again
    browser.find_element(By.ID, "submit").click()
    assert "sebelum Anda mengubahnya" in shown(browser, "receipt-notice")
    assert receipt_body(browser, server) == "Sampah di Pasar Oeba menumpuk."
    assert head_position(server) == before + 1  # not a second report


# Answers the page's next request as the rate limit does, without it reaching the server: too many reports from
# this address (a warnet, a campus, a mobile operator's shared address), try again in 30 seconds.
RATE_LIMIT_THE_NEXT_REQUEST = """
const realFetch = window.fetch;
window.fetch = async () => {
  window.fetch = realFetch;
  const problem = { type: "/problems/too-many-requests", title: "Too many requests", status: 429,
    detail: "too many requests from this client" };
  return new Response(JSON.stringify(problem),
    { status: 429, headers: { "Content-Type": "application/problem+json", "Retry-After": "30" } });
};
"""


def turned_away_by_the_rate_limit(browser: WebDriver) -> None:
    """The form sent once more, and answered 429."""
    browser.execute_script(RATE_LIMIT_THE_NEXT_REQUEST)
    submit = browser.find_element(By.ID, "submit")
    submit.click()  # the button is off until the answer (set before the request goes)
    WebDriverWait(browser, WAIT).until(
        lambda _: submit.is_enabled() and "dalam 30 detik" in browser.find_element(By.ID, "form-error").text
    )


def test_a_report_whose_answer_was_lost_is_filed_once_though_its_retries_meet_the_rate_limit(server, browser):
    """A bug hunt: a 429 to the retry of a report whose answer was lost was taken for a refusal, so the page dropped
    the report's key and the next attempt filed the same report a second time. A 429 says nothing of the report
    sent before it."""
    body = "Lampu jalan di Jl. Frans Seda padam sejak Senin."
    before = filed_with_its_answer_lost(browser, server, "Lampu jalan padam", body)
    turned_away_by_the_rate_limit(browser)  # sent again unchanged
    browser.find_element(By.ID, "body").send_keys(" Jalan gelap gulita.")
    turned_away_by_the_rate_limit(browser)  # then changed
    browser.find_element(By.ID, "submit").click()  # the limit has passed
    assert receipt_body(browser, server) == body
    assert head_position(server) - before == 1  # not a second report
    assert "sebelum Anda mengubahnya" in shown(browser, "receipt-notice")


def test_a_report_turned_away_by_the_rate_limit_and_then_changed_is_filed_as_changed(server, browser):
    """Nothing was filed before the 429: the report the citizen then corrects is the one to file."""
    form_filled(browser, server, "Air PDAM keruh", "Air PDAM di Oesapa keruh.")
    before = head_position(server)
    turned_away_by_the_rate_limit(browser)
    browser.find_element(By.ID, "body").send_keys(" Sudah seminggu.")
    browser.find_element(By.ID, "submit").click()
    assert receipt_body(browser, server) == "Air PDAM di Oesapa keruh. Sudah seminggu."
    assert head_position(server) - before == 1
    assert not browser.find_element(By.ID, "receipt-notice").is_displayed()


def test_what_the_server_refuses_is_shown_beside_its_field_and_nothing_is_filed(server, browser):
    before = head_position(server)
    browser.get(server.url + "/")
    browser.find_element(By.ID, "title").send_keys("<b>Tolong</b>")
    browser.find_element(By.ID, "body").send_keys("Air PDAM mati tiga hari.")
    browser.find_element(By.ID, "reporter-phone").send_keys("12345")
    browser.find_element(By.ID, "submit").click()  # and no region chosen
    assert shown(browser, "title-error") == "Gunakan teks biasa: kode HTML tidak diterima."
    assert shown(browser, "phone-error") == "Nomor telepon tidak valid: awali dengan 0, 62, atau +62."
    assert shown(browser, "region_code-error") == "Pilih wilayah dari daftar."
    assert shown(browser, "form-error") == "Belum terkirim: periksa isian yang ditandai."
    assert browser.find_element(By.ID, "body-error").text == ""
    title = browser.find_element(By.ID, "title")
    assert (title.get_attribute("aria-invalid"), title.get_attribute("aria-describedby")) == ("true", "title-error")
    assert browser.find_element(By.ID, "body").get_attribute("aria-invalid") is None
    assert not browser.find_element(By.ID, "receipt").is_displayed()
    assert head_position(server) == before

    title.clear()
    title.send_keys("Air PDAM mati")
    browser.find_element(By.ID, "reporter-phone").clear()
    Select(browser.find_element(By.ID, "region_code")).select_by_value("53.71")
    browser.find_element(By.ID, "submit").click()
    assert shown(browser, "tracking-id")
    assert head_position(server) == before + 1  # the corrected report, once


def test_tracking_shows_the_status_and_the_agencys_public_follow_ups_as_text(server, browser):
    filed = server.post("/api/complaints", json={**REPORT, "title": "Harga air < Rp10.000 & antre"})
    assert filed.status_code == 201, filed.text
    tracking_id = filed.json()["tracking_id"]
    admin = token(server, Role.admin_national, agency_id=NATIONAL_ADMIN_AGENCY)
    liaison = token(server, Role.liaison, agency_id="pemda-53.71")
    steps = [
        (f"/api/complaints/{tracking_id}/verify", {"category": "Infrastruktur"}, admin),
        (f"/api/complaints/{tracking_id}/dispose", {"agency_id": "pemda-53.71"}, admin),
        (f"/api/complaints/{tracking_id}/accept", {}, liaison),
        (f"/api/complaints/{tracking_id}/follow-ups", {"text": "Petugas sudah meninjau lokasi."}, liaison),
        (f"/api/complaints/{tracking_id}/follow-ups", {"text": "Catatan internal.", "public": False}, liaison),
    ]
    for path, body, headers in steps:
        answer = server.post(path, json=body, headers=headers)
        assert answer.status_code in (200, 201), f"{path}: {answer.text}"

    browser.get(f"{server.url}/lacak#{tracking_id}")
    assert shown(browser, "report-status") == "Sedang ditindaklanjuti"
    assert shown(browser, "report-title") == "Harga air < Rp10.000 & antre"
    assert shown(browser, "report-agency") == "Pemerintah Kota Kupang"
    follow_ups = browser.find_elements(By.CSS_SELECTOR, "#report-follow-ups li")
    assert [item.text.split(" — ", 1)[1] for item in follow_ups] == ["Petugas sudah meninjau lokasi."]


def test_the_reporter_token_is_gone_once_the_citizen_leaves_the_page(server, browser):
    """On a shared computer (an internet café, a service counter) the next person's Back button must not bring
    back the last reporter's token, identity or confidential report: the browser keeps a page it leaves (its
    back/forward cache), as it was, unless the page clears them as it is left."""
    tracking_id, reporter_token = filed_with_the_form(
        browser, server, "Pungutan liar di kantor kelurahan", "Petugas meminta uang untuk surat pengantar.",
        "Yohanes Bria",
    )
    browser.find_element(By.LINK_TEXT, "Statistik").click()
    WebDriverWait(browser, WAIT).until(lambda _: browser.current_url.endswith("/statistik"))
    browser.back()
    WebDriverWait(browser, WAIT).until(lambda _: browser.current_url == server.url + "/")
    assert reporter_token not in browser.page_source
    assert not browser.find_element(By.ID, "receipt").is_displayed()
    assert browser.find_element(By.ID, "lapor-form").is_displayed()  # a new report can be written
    for kept in ("Yohanes Bria", "Pungutan liar"):  # nor is the report in the form's fields
        assert kept not in browser.execute_script("return [...document.forms].map(f => [...f.elements].map("
                                                  "e => e.value).join(' ')).join(' ')")

    browser.get(f"{server.url}/lacak#{tracking_id}")
    browser.find_element(By.ID, "track-token").send_keys(reporter_token)
    browser.find_element(By.CSS_SELECTOR, "#lacak-form button").click()
    assert shown(browser, "report-title") == "Pungutan liar di kantor kelurahan"
    browser.find_element(By.LINK_TEXT, "Statistik").click()
    WebDriverWait(browser, WAIT).until(lambda _: browser.current_url.endswith("/statistik"))
    browser.back()
    WebDriverWait(browser, WAIT).until(lambda _: "/lacak" in browser.current_url)
    assert browser.find_element(By.ID, "track-token").get_attribute("value") == ""
    assert not browser.find_element(By.ID, "report").is_displayed()
    assert "Pungutan liar" not in browser.page_source


def test_without_the_script_the_forms_put_nothing_in_the_address(server):
    """Before the script has run (a slow connection) or where it does not (scripts off), a form is the browser's
    own: it was sent as GET to its page, so the reporter token (/lacak?...&reporter_token=...), or the report and
    the reporter's name and phone (/?...), went into the address, the history and any proxy's log."""
    with chromium(javascript=False) as plain:
        plain.get(server.url + "/lacak")
        plain.find_element(By.ID, "track-id").send_keys("A68H-TPX0-V")
        plain.find_element(By.ID, "track-token").send_keys("rahasia-token-pelapor")
        plain.find_element(By.CSS_SELECTOR, "#lacak-form button").click()
        assert "rahasia-token-pelapor" not in plain.current_url
        plain.get(server.url + "/")
        plain.find_element(By.ID, "title").send_keys("Jalan rusak")
        plain.find_element(By.ID, "reporter-phone").send_keys("081234567890")
        plain.find_element(By.ID, "reporter-phone").send_keys(Keys.ENTER)  # implicit submission
        assert "081234567890" not in plain.current_url
        assert "JavaScript" in plain.find_element(By.TAG_NAME, "body").text  # says why nothing happens


def test_a_page_whose_script_did_not_arrive_says_why_its_buttons_are_off(server):
    """Session 32: the buttons come disabled until the script enables them, and only a <noscript> line said why. A
    script that never arrived (a connection dropped on a slow network) or that an old phone's browser could not run
    left the buttons off with nothing said. The page says it until the script has set it up."""
    with chromium() as session:
        session.execute_cdp_cmd("Network.enable", {})
        session.execute_cdp_cmd("Network.setBlockedURLs", {"urls": ["*/static/lapor.js"]})
        for path in ("/", "/lacak"):
            session.get(server.url + path)
            assert not session.find_element(By.CSS_SELECTOR, "form button").is_enabled()
            assert "memerlukan JavaScript" in session.find_element(By.TAG_NAME, "main").text
        session.execute_cdp_cmd("Network.setBlockedURLs", {"urls": []})
        session.get(server.url + "/")
        submit = session.find_element(By.ID, "submit")
        WebDriverWait(session, WAIT).until(lambda _: submit.is_enabled())
        assert "memerlukan JavaScript" not in session.find_element(By.TAG_NAME, "main").text


# -- the reporter's actions on the tracking page ------------------------------------------------------------


def filed(server: Server, **changes: Any) -> tuple[str, str]:
    """A report filed over the API: (tracking id, reporter token)."""
    answer = server.post("/api/complaints", json={**REPORT, **changes})
    assert answer.status_code == 201, answer.text
    return answer.json()["tracking_id"], answer.json()["reporter_token"]


def moved(server: Server, tracking_id: str, *steps: tuple[str, dict[str, Any], dict[str, str]]) -> None:
    for action, body, headers in steps:
        answer = server.post(f"/api/complaints/{tracking_id}/{action}", json=body, headers=headers)
        assert answer.status_code in (200, 201), f"{action}: {answer.text}"


def opened_with_token(browser: WebDriver, server: Server, tracking_id: str, reporter_token: str) -> None:
    browser.get(f"{server.url}/lacak#{tracking_id}")
    WebDriverWait(browser, WAIT).until(lambda _: browser.find_element(By.ID, "report-id").text == tracking_id)
    assert not browser.find_element(By.ID, "actions").is_displayed()  # nobody's actions without the token
    browser.find_element(By.ID, "track-token").send_keys(reporter_token)
    browser.find_element(By.CSS_SELECTOR, "#lacak-form button").click()
    WebDriverWait(browser, WAIT).until(lambda _: browser.find_element(By.ID, "actions").is_displayed())


def pended(server: Server) -> tuple[str, str, dict[str, str]]:
    """A report filed over the API that the national admin pended, asking where it is: (tracking id, reporter
    token, the national admin's headers)."""
    tracking_id, reporter_token = filed(server)
    admin = token(server, Role.admin_national, agency_id=NATIONAL_ADMIN_AGENCY)
    moved(server, tracking_id, ("pend", {"information_requested": "Di depan kantor lurah mana?"}, admin))
    return tracking_id, reporter_token, admin


def test_the_reporter_adds_the_information_the_admin_asked_for(server, browser):
    tracking_id, reporter_token, _ = pended(server)
    opened_with_token(browser, server, tracking_id, reporter_token)
    assert shown(browser, "information-requested") == "Di depan kantor lurah mana?"
    assert not browser.find_element(By.ID, "feedback-form").is_displayed()
    browser.find_element(By.ID, "information-text").send_keys("Kantor Lurah Oebobo, Jl. Frans Seda.")
    browser.find_element(By.CSS_SELECTOR, "#information-form button").click()
    assert shown(browser, "action-result") == "Informasi tambahan terkirim."
    assert shown(browser, "report-status") == "Menunggu verifikasi"
    assert not browser.find_element(By.ID, "information-form").is_displayed()
    view = server.get(f"/api/complaints/{tracking_id}").json()
    assert [item["text"] for item in view["information"]] == ["Kantor Lurah Oebobo, Jl. Frans Seda."]


def test_information_whose_answer_was_lost_is_not_said_unsent_and_shows_once_looked_up_again(server, browser):
    """Session 32: the information reached the server and was recorded, its answer lost (a connection dropped); the
    page said "Tidak terkirim" (not sent), and looked up again it showed no form (the report was no longer pended)
    and nothing of the information, so the reporter could neither send it again nor see that it had arrived."""
    tracking_id, reporter_token, _ = pended(server)
    opened_with_token(browser, server, tracking_id, reporter_token)
    browser.find_element(By.ID, "information-text").send_keys("Kantor Lurah Oebobo, Jl. Frans Seda.")
    browser.execute_script(LOSE_THE_NEXT_ANSWER)
    browser.find_element(By.CSS_SELECTOR, "#information-form button").click()
    said = shown(browser, "action-error")
    assert "mungkin sudah terkirim" in said
    assert "Tidak terkirim" not in said
    browser.find_element(By.CSS_SELECTOR, "#lacak-form button").click()
    assert shown(browser, "report-status") == "Menunggu verifikasi"
    assert shown(browser, "report-information").endswith("Informasi tambahan: Kantor Lurah Oebobo, Jl. Frans Seda.")
    assert not browser.find_element(By.ID, "information-form").is_displayed()
    assert [item["text"] for item in server.get(f"/api/complaints/{tracking_id}").json()["information"]] == [
        "Kantor Lurah Oebobo, Jl. Frans Seda."
    ]


def test_a_double_click_on_a_reporters_action_sends_it_once_and_says_it_was_sent(server, browser):
    """The second click of a double click sent the action again with the version the page showed; the first had
    moved the report on, so the second was refused (412) and the page said the report had changed, beside the
    message that the information was sent."""
    tracking_id, reporter_token, admin = pended(server)
    opened_with_token(browser, server, tracking_id, reporter_token)
    browser.find_element(By.ID, "information-text").clear()
    browser.find_element(By.ID, "information-text").send_keys("Kantor Lurah Oebobo.")
    ActionChains(browser).double_click(browser.find_element(By.CSS_SELECTOR, "#information-form button")).perform()
    assert shown(browser, "action-result") == "Informasi tambahan terkirim."
    assert browser.find_element(By.ID, "action-error").text == ""
    view = server.get(f"/api/complaints/{tracking_id}").json()
    assert [item["text"] for item in view["information"]] == ["Kantor Lurah Oebobo."]
    # What was sent is not left in the form for the next request for information.
    moved(server, tracking_id, ("pend", {"information_requested": "Sejak kapan?"}, admin))
    browser.find_element(By.CSS_SELECTOR, "#lacak-form button").click()
    assert shown(browser, "information-requested") == "Sejak kapan?"
    assert browser.find_element(By.ID, "information-text").get_attribute("value") == ""


def two_pended_the_first_open(server: Server, browser: WebDriver) -> tuple[str, str, str]:
    """Two reports of one reporter, both pended, the first open with its token on the tracking page: (the first's
    tracking id, the second's, the second's token)."""
    admin = token(server, Role.admin_national, agency_id=NATIONAL_ADMIN_AGENCY)
    first, first_token = filed(server)
    second, second_token = filed(server, title="Drainase tersumbat")
    for tracking_id in (first, second):
        moved(server, tracking_id, ("pend", {"information_requested": "Di mana tepatnya?"}, admin))
    opened_with_token(browser, server, first, first_token)
    return first, second, second_token


def test_a_link_to_another_report_leaves_nothing_of_the_first_in_its_forms(server, browser):
    """A reporter with two reports follows the link of the second (a changed fragment) while writing the first's
    information: what they wrote for the first must not be offered, ready to send, on the second."""
    _, second, second_token = two_pended_the_first_open(server, browser)
    browser.find_element(By.ID, "information-text").clear()
    browser.find_element(By.ID, "information-text").send_keys("Depan rumah saya, Jl. Kenari 7.")
    browser.execute_script("location.hash = arguments[0]", second)
    WebDriverWait(browser, WAIT).until(lambda _: browser.find_element(By.ID, "report-id").text == second)
    browser.find_element(By.ID, "track-token").send_keys(second_token)
    browser.find_element(By.CSS_SELECTOR, "#lacak-form button").click()
    WebDriverWait(browser, WAIT).until(lambda _: browser.find_element(By.ID, "information-form").is_displayed())
    assert browser.find_element(By.ID, "information-text").get_attribute("value") == ""


# Fails the page's next request as a dropped connection does, before it reaches the server.
FAIL_THE_NEXT_REQUEST = """
const realFetch = window.fetch;
window.fetch = async () => {
  window.fetch = realFetch;
  throw new TypeError("Failed to fetch");
};
"""


def test_a_report_whose_lookup_failed_shows_nothing_of_the_report_shown_before(server, browser):
    """Session 32: a reporter with two pended reports, the first open, typed the second's number and token; the
    lookup failed (no connection) and the page went on showing the first, with its form for information, under the
    second's number. What the reporter then wrote for the second went to the first, with the first's token."""
    first, second, second_token = two_pended_the_first_open(server, browser)
    for field, value in (("track-id", second), ("track-token", second_token)):
        browser.find_element(By.ID, field).clear()
        browser.find_element(By.ID, field).send_keys(value)
    browser.execute_script(FAIL_THE_NEXT_REQUEST)
    browser.find_element(By.CSS_SELECTOR, "#lacak-form button").click()
    assert shown(browser, "lacak-error").startswith("Tidak dapat menghubungi server")
    assert not browser.find_element(By.ID, "report").is_displayed()
    assert not browser.find_element(By.ID, "information-form").is_displayed()
    assert browser.find_element(By.ID, "report-id").text == ""
    # Looked up again, with the connection back: the second report, and its form.
    browser.find_element(By.CSS_SELECTOR, "#lacak-form button").click()
    WebDriverWait(browser, WAIT).until(lambda _: browser.find_element(By.ID, "report-id").text == second)
    browser.find_element(By.ID, "information-text").send_keys("Depan Pasar Oeba.")
    browser.find_element(By.CSS_SELECTOR, "#information-form button").click()
    assert shown(browser, "action-result") == "Informasi tambahan terkirim."
    assert server.get(f"/api/complaints/{first}").json()["information"] == []
    assert [item["text"] for item in server.get(f"/api/complaints/{second}").json()["information"]] == [
        "Depan Pasar Oeba."
    ]


def test_a_mistyped_reporter_token_is_told_in_the_citizens_words_and_nothing_is_added(server, browser):
    """A public report opens without its token, so a mistyped token (43 random characters) still shows the report
    and the form the reporter's action takes; the server then refuses the action (401), which the page passed on
    in the API's English ("X-Reporter-Token does not open complaint ...")."""
    tracking_id, reporter_token, _ = pended(server)
    opened_with_token(browser, server, tracking_id, reporter_token[:-1] + ("A" if reporter_token[-1] != "A" else "B"))
    browser.find_element(By.ID, "information-text").send_keys("Kantor Lurah Oebobo.")
    browser.find_element(By.CSS_SELECTOR, "#information-form button").click()
    assert shown(browser, "action-error") == (
        "Token pelapor tidak cocok dengan laporan ini. Periksa token yang Anda simpan, lalu lacak lagi."
    )
    assert server.get(f"/api/complaints/{tracking_id}").json()["information"] == []


def test_a_token_and_a_number_pasted_with_invisible_characters_open_the_report(server, browser):
    """Session 31: a reporter token copied from a chat or an SMS with a zero width space, a direction mark or a line
    break in it was put in the request's header as it was, which the browser refuses to send, and the page said the
    internet could not be reached. What is not part of the token or the number is left out; a token that still holds
    what no token does is told so, and nothing is sent."""
    tracking_id, reporter_token, _ = pended(server)
    browser.get(f"{server.url}/lacak")
    browser.find_element(By.ID, "track-id").send_keys(f"\u200e{tracking_id}\u200b")
    pasted = f"\u202a{reporter_token[:20]}\u200b{reporter_token[20:]}\u202c"
    browser.find_element(By.ID, "track-token").send_keys(pasted)
    browser.find_element(By.CSS_SELECTOR, "#lacak-form button").click()
    WebDriverWait(browser, WAIT).until(lambda _: browser.find_element(By.ID, "actions").is_displayed())
    assert browser.find_element(By.ID, "lacak-error").text == ""
    assert shown(browser, "report-id") == tracking_id
    browser.find_element(By.ID, "information-text").send_keys("Kantor Lurah Oebobo.")
    browser.find_element(By.CSS_SELECTOR, "#information-form button").click()
    assert shown(browser, "action-result") == "Informasi tambahan terkirim."
    field = browser.find_element(By.ID, "track-token")
    field.clear()
    field.send_keys(reporter_token[:-1] + "\u00e9")  # a letter no token holds
    browser.find_element(By.CSS_SELECTOR, "#lacak-form button").click()
    assert shown(browser, "lacak-error") == (
        "Token pelapor hanya berisi huruf, angka, tanda - dan _. Periksa token yang Anda simpan."
    )
    assert not browser.find_element(By.ID, "actions").is_displayed()


def test_the_reporter_answers_a_resolution_and_a_stale_page_is_told_to_look_again(server, browser):
    tracking_id, reporter_token = filed(server)
    admin = token(server, Role.admin_national, agency_id=NATIONAL_ADMIN_AGENCY)
    liaison = token(server, Role.liaison, agency_id="pemda-53.71")
    moved(server, tracking_id, ("verify", {"category": "Infrastruktur"}, admin),
          ("dispose", {"agency_id": "pemda-53.71"}, admin), ("accept", {}, liaison),
          ("resolve", {"resolution": "Lubang sudah ditambal."}, liaison))
    opened_with_token(browser, server, tracking_id, reporter_token)
    browser.find_element(By.CSS_SELECTOR, "#feedback-form input[value=false]").click()
    Select(browser.find_element(By.ID, "feedback-rating")).select_by_value("2")
    browser.find_element(By.ID, "feedback-comment").send_keys("Tambalannya sudah retak lagi.")
    browser.find_element(By.CSS_SELECTOR, "#feedback-form button").click()
    assert shown(browser, "action-result") == "Tanggapan Anda terkirim. Terima kasih."
    assert shown(browser, "report-feedback") == (
        "Tanggapan atas tindak lanjut: tidak puas, penilaian 2 dari 5 — Tambalannya sudah retak lagi."
    )
    feedback = server.get(f"/api/complaints/{tracking_id}").json()["feedback"]
    assert (feedback["satisfied"], feedback["rating"]) == (False, 2)
    assert feedback["comment"] == "Tambalannya sudah retak lagi."

    # A page older than the report: the feedback was given meanwhile (another tab), so the page's is refused.
    second, second_token = filed(server)
    moved(server, second, ("verify", {"category": "Infrastruktur"}, admin),
          ("dispose", {"agency_id": "pemda-53.71"}, admin), ("accept", {}, liaison),
          ("resolve", {"resolution": "Sudah ditangani."}, liaison))
    opened_with_token(browser, server, second, second_token)
    answered = server.post(f"/api/complaints/{second}/feedback", json={"satisfied": True, "rating": 5},
                           headers={"X-Reporter-Token": second_token})
    assert answered.status_code == 200, answered.text
    browser.find_element(By.CSS_SELECTOR, "#feedback-form button").click()
    assert "sudah berubah" in shown(browser, "action-error")
    assert server.get(f"/api/complaints/{second}").json()["feedback"]["rating"] == 5


def test_the_reporter_consents_to_the_ombudsman_when_it_is_offered(server, browser):
    tracking_id, reporter_token = filed(server)
    admin = token(server, Role.admin_national, agency_id=NATIONAL_ADMIN_AGENCY)
    liaison = token(server, Role.liaison, agency_id="pemda-53.71")
    moved(server, tracking_id, ("verify", {"category": "Infrastruktur"}, admin),
          ("dispose", {"agency_id": "pemda-53.71"}, admin), ("accept", {}, liaison))
    # The offer is the deadline scheduler's, weeks later: appended here as it would be, beside the running server.
    data = Path(server.process.args[server.process.args.index("--data") + 1])
    store = open_store(f"sqlite:///{data / 'events.db'}")
    try:
        stream = f"complaint-{tracking_id}"
        offer = ComplaintEscalated(kind="ombudsman_offer", reason="Tindak lanjut melewati batas waktu.",
                                   from_level="agency", to_level="agency", automatic=True)
        store.append(stream, [offer.to_new_event()], expected_version=store.stream_version(stream))
    finally:
        store.close()
    opened_with_token(browser, server, tracking_id, reporter_token)
    assert browser.find_element(By.ID, "consent-form").is_displayed()
    browser.find_element(By.CSS_SELECTOR, "#consent-form button").click()
    assert shown(browser, "action-result") == "Persetujuan Anda terkirim kepada Ombudsman."
    assert server.get(f"/api/complaints/{tracking_id}").json()["ombudsman_consent"] is True
    assert not browser.find_element(By.ID, "consent-form").is_displayed()


# -- the public statistics ----------------------------------------------------------------------------------


def public_statistics(server: Server, **filters: str) -> dict[str, Any]:
    answer = server.get("/api/public/statistics", params=filters)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_the_statistics_page_shows_the_public_figures_and_withholds_a_selection_too_small(server, browser):
    for n in range(5):  # five reports of one city in one month: one cell, shown
        filed(server, region_code="35.73", category="Air bersih", title=f"Air PDAM mati {n + 1}")
    filed(server, region_code="35.73", category="Jalan rusak")  # a category of one report: shown as "other"
    WebDriverWait(browser, WAIT).until(
        lambda _: (public_statistics(server, region="35.73")["totals"] or {}).get("reports") == 6)
    expected = public_statistics(server, region="35.73")

    browser.get(server.url + "/statistik")
    shown(browser, "stat-applied")  # the national figures, at once
    Select(browser.find_element(By.ID, "stat-region")).select_by_value("35.73")
    browser.find_element(By.CSS_SELECTOR, "#statistik-form button").click()
    WebDriverWait(browser, WAIT).until(lambda _: "35.73" in browser.find_element(By.ID, "stat-applied").text)
    assert browser.find_element(By.ID, "stat-reports").text == "6"
    assert browser.find_element(By.ID, "stat-open").text == str(expected["totals"]["open"])
    monthly = [[cell.text for cell in row.find_elements(By.TAG_NAME, "td")]
               for row in browser.find_elements(By.CSS_SELECTOR, "#stat-monthly tr")]
    assert monthly == [[month["month"], str(month["received"]), str(month["disposed"]), str(month["followed_up"])]
                       for month in expected["monthly"]]
    categories = [[cell.text for cell in row.find_elements(By.TAG_NAME, "td")]
                  for row in browser.find_elements(By.CSS_SELECTOR, "#stat-categories tr")]
    assert categories == [["Air bersih", "5"], ["(lainnya)", "1"]]
    assert not browser.find_element(By.ID, "stat-withheld").is_displayed()

    Select(browser.find_element(By.ID, "stat-region")).select_by_value("11")  # Aceh: no report at all
    browser.find_element(By.CSS_SELECTOR, "#statistik-form button").click()
    WebDriverWait(browser, WAIT).until(lambda _: browser.find_element(By.ID, "stat-withheld").is_displayed())
    assert not browser.find_element(By.ID, "stat-figures").is_displayed()

    browser.execute_script("document.getElementById('stat-from').value = '2026-12-31';"
                           "document.getElementById('stat-to').value = '2026-12-01';")
    browser.find_element(By.CSS_SELECTOR, "#statistik-form button").click()
    assert shown(browser, "statistik-error") == "Tanggal awal harus sebelum atau sama dengan tanggal akhir."


def test_the_statistics_of_a_region_on_a_browser_older_than_2023(server, browser):
    """URLSearchParams.size came with Chrome 113 and Safari 17 (2023): an iPhone that stays on iOS 16 has none, so
    the page's `query.size ? ... : ""` sent no query at all, and a region's figures were the whole country's."""
    older = browser.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument",
                                    {"source": "delete URLSearchParams.prototype.size;"})
    try:
        browser.get(server.url + "/statistik")
        assert browser.execute_script("return new URLSearchParams('a=1').size") is None
        shown(browser, "stat-applied")
        Select(browser.find_element(By.ID, "stat-region")).select_by_value("35.73")
        browser.find_element(By.CSS_SELECTOR, "#statistik-form button").click()
        WebDriverWait(browser, WAIT).until(lambda _: "35.73" in browser.find_element(By.ID, "stat-applied").text,
                                           message="the figures shown are not the region's (sent without a query)")
    finally:
        browser.execute_cdp_cmd("Page.removeScriptToEvaluateOnNewDocument", {"identifier": older["identifier"]})
