"""The Partner Center in a real browser, as a partner and as staff: earnings with their explanations, MDF applied
for and claimed, a statement downloaded and disputed; a reclassification reaching the partner's open page without a
reload, and an FX rate and its correction; staff approving a fund request, paying a claim, settling a dispute; a
rejected form showing the problem; webhook subscriptions; a phone's width.

The data is set up once through the REST API on the gateway (CONTRACT §3 to §6), following docs/statements.md: a sale
of last month, priced, then last month closed (its statement is final), and a sale of this month.
"""

from __future__ import annotations

import csv
import io
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from tests.e2e.conftest import ROOT
from tests.web.conftest import Workspace

pytestmark = pytest.mark.browser

SCREENSHOTS = ROOT / "docs" / "screenshots"
T = TypeVar("T")


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 30.0) -> T:
    """Polls `probe` until it answers something truthy (the services apply events moments after they happen)."""
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.2)


def ok(response: httpx.Response) -> Any:
    request = response.request
    assert response.status_code < 300, f"{request.method} {request.url}: {response.status_code} {response.text}"
    return response.json() if response.content else None


def period_of(moment: datetime) -> str:
    return f"{moment.year:04d}-{moment.month:02d}"


def month_start(moment: datetime) -> datetime:
    return moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def screenshot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True, animations="disabled")


@dataclass
class Story:
    partner_id: str
    partner_name: str
    account_id: str
    sku: str
    program: str
    fund: str
    last_period: str
    this_period: str
    last_sale: str
    this_sale: str

    def sale_id(self, label: str) -> str:
        return f"{self.sku}-{label}"


def accrued(api: httpx.Client, partner_id: str, sale_id: str) -> dict[str, Any] | None:
    items = ok(api.get(f"/v1/partners/{partner_id}/accruals", params={"sale_id": sale_id}))["items"]
    return items[0] if items and items[0]["status"] == "accrued" else None


def set_up_story(workspace: Workspace) -> Story:
    """A partner with an account it owns, a base rebate paying more for smb accounts, an MDF accruing 10 % of
    eligible revenue; a sale of last month (priced, then that month closed) and a sale of this month."""
    suffix = uuid.uuid4().hex[:6]
    now = datetime.now(UTC)
    this_start = month_start(now)
    last_start = month_start(this_start - timedelta(days=1))
    sku = f"ANALYTICS-{suffix}"
    program = f"BASE-{suffix}"
    fund = f"MDF-{suffix}"
    with workspace.api("admin") as api:
        partner = ok(api.post("/v1/partners", json={
            "name": f"Nordic Integrators {suffix}", "country": "SE", "region": "EMEA", "types": ["sales"]}))
        ok(api.post(f"/v1/partners/{partner['id']}/status", json={"status": "active"}))
        account = ok(api.post("/v1/accounts", json={
            "name": f"Stockholm Retail {suffix}", "country": "SE", "industry": "retail",
            "classification": "commercial"}))
        wait_for("accounts to know the partner is active", lambda: api.put(
            f"/v1/accounts/{account['id']}/owner",
            json={"partner_id": partner["id"], "effective_from": "2020-01-01T00:00:00Z"}).status_code == 200)
        ok(api.put(f"/v1/products/{sku}", json={"name": "Analytics", "category": "software", "rebate_eligible": True}))
        ok(api.post("/v1/programs", json={
            "code": program, "name": "Base rebate", "kind": "base_rebate", "valid_from": "2020-01-01T00:00:00Z",
            "rules": [{"classification": "commercial", "category": "software", "rate": "0.05"},
                      {"classification": "smb", "category": "software", "rate": "0.08"}]}))
        ok(api.post("/v1/funds", json={
            "code": fund, "kind": "mdf", "currency": "USD", "budget": "100000.00", "accrual_rate": "0.10",
            "valid_from": "2020-01-01T00:00:00Z", "valid_to": "2035-01-01T00:00:00Z"}))
        story = Story(partner["id"], partner["name"], account["id"], sku, program, fund, period_of(last_start),
                      period_of(this_start), f"{sku}-LAST", f"{sku}-THIS")
        booked = last_start + timedelta(days=9, hours=10)
        workspace.publish_sale(sale_id=story.last_sale, partner_id=story.partner_id, account_id=story.account_id,
                               sku=sku, amount="12000.00", booked_at=booked.isoformat())
        wait_for("last month's sale to be priced", lambda: accrued(api, story.partner_id, story.last_sale))
        ok(api.post(f"/v1/periods/{story.last_period}/close"))
        workspace.publish_sale(sale_id=story.this_sale, partner_id=story.partner_id, account_id=story.account_id,
                               sku=sku, amount="2000.00", booked_at=now.isoformat())
        wait_for("this month's sale to be priced", lambda: accrued(api, story.partner_id, story.this_sale))
        wait_for("the MDF to be earned", lambda: any(
            b["fund_code"] == fund and b["available"] == "1400.00"
            for b in ok(api.get(f"/v1/partners/{story.partner_id}/fund-balances"))["items"]))
    return story


_stories: dict[str, Story] = {}


def story_for(workspace: Workspace) -> Story:
    """One story per running workspace, shared by the browser modules (setting it up costs seconds)."""
    if workspace.url not in _stories:
        started = time.monotonic()
        _stories[workspace.url] = set_up_story(workspace)
        print(f"\nthe story's data set up through the API in {time.monotonic() - started:.1f} s")
    return _stories[workspace.url]


@pytest.fixture(scope="module")
def story(workspace: Workspace) -> Story:
    return story_for(workspace)


def open_as(page: Any, workspace: Workspace, role: str, partner_id: str | None, route: str) -> None:
    page.goto(workspace.link(role, partner_id))
    page.wait_for_selector("main h1")
    page.evaluate("route => { window.location.hash = route }", route)
    page.wait_for_selector("main h1")


def test_a_partner_sees_its_earnings_applies_for_mdf_claims_downloads_and_disputes(
    workspace: Workspace, story: Story, page: Any, tmp_path: Path
) -> None:
    page.goto(workspace.link("partner", story.partner_id))
    # Signed in from the link: the token left the address, the header says who is signed in.
    page.get_by_role("heading", name="Earnings", level=1).wait_for()
    assert "token=" not in page.url
    assert page.evaluate("sessionStorage.getItem('partnerhub.token')")
    header = page.get_by_role("banner")
    header.get_by_text(story.partner_name).wait_for()
    assert "partner" in header.inner_text()

    # Last month's sale: its accrual and the sentence explaining it.
    last_row = page.get_by_role("row").filter(has_text=story.last_sale)
    last_row.get_by_text("$600.00").wait_for()
    last_row.get_by_text("pays 0.05 x 12000.00 USD = 600.00 USD").wait_for()
    page.get_by_role("row").filter(has_text=story.this_sale).get_by_text("$100.00").wait_for()

    # MDF: 10 % of 14,000.00 earned; 400.00 fits, so it is approved at once; then a claim against it.
    page.get_by_role("navigation", name="Workspace").get_by_role("link", name="Funds").click()
    page.get_by_role("heading", name="Marketing funds", level=1).wait_for()
    page.get_by_role("row").filter(has_text=story.fund).get_by_text("$1,400.00").first.wait_for()
    form = page.locator("form").filter(has=page.get_by_role("button", name="Apply"))
    form.get_by_label("Fund").select_option(story.fund)
    form.get_by_label("Amount").fill("400.00")
    form.get_by_label("Activity").fill("Joint webinar with Stockholm Retail")
    form.get_by_role("button", name="Apply").click()
    form.get_by_text("Approved at once").wait_for()
    card = page.get_by_role("listitem").filter(has_text="Joint webinar with Stockholm Retail")
    card.get_by_text("approved", exact=True).wait_for()
    card.get_by_role("button", name="Claim", exact=True).click()
    claim = card.get_by_role("form", name="Claim against Joint webinar with Stockholm Retail")
    claim.get_by_label("Claim amount").fill("250.00")
    claim.get_by_label("Proof (link)").fill("https://files.example.com/webinar-invoice.pdf")
    claim.get_by_role("button", name="Submit claim").click()
    claim.get_by_text("Claim of 250.00 USD submitted.").wait_for()
    claims = page.get_by_role("table", name="Your claims")
    claims.get_by_role("row").filter(has_text="$250.00").get_by_text("submitted", exact=True).wait_for()
    screenshot(page, "partner-funds")

    # Last month is closed: its statement downloads as CSV with the sale's line in it.
    page.get_by_role("navigation", name="Workspace").get_by_role("link", name="Statements").click()
    page.get_by_role("heading", name="Statements and disputes", level=1).wait_for()
    page.get_by_role("row").filter(has_text=story.last_sale).first.wait_for()
    page.get_by_text("Closed: its figures are final").wait_for()
    with page.expect_download() as downloading:
        page.get_by_role("button", name="Download CSV").click()
    download = downloading.value
    assert download.suggested_filename == f"statement-{story.partner_id}-{story.last_period}.csv"
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)
    rows = list(csv.DictReader(io.StringIO(saved.read_text())))
    assert {"entry_id", "kind", "sale_id", "program_code", "amount", "currency", "explanation"} <= set(rows[0])
    line = next(r for r in rows if r["sale_id"] == story.last_sale)
    assert (line["kind"], line["program_code"], line["amount"], line["currency"]) == (
        "original", story.program, "600.00", "USD")

    with page.expect_download() as downloading:
        page.get_by_role("button", name="Download PDF").click()
    pdf = tmp_path / downloading.value.suggested_filename
    downloading.value.save_as(pdf)
    assert pdf.name.endswith(f"{story.last_period}.pdf") and pdf.read_bytes().startswith(b"%PDF")

    # A dispute about that sale under that program.
    page.get_by_role("button", name="Dispute…").click()
    dispute = page.get_by_role("form", name=f"Dispute the statement for {month_name(story.last_period)}")
    dispute.get_by_label("Sale id (optional)").fill(story.last_sale)
    dispute.get_by_label("Program code (optional)").fill(story.program)
    dispute.get_by_label("Amount you believe you are owed").fill("12.50")
    dispute.get_by_label("Reason").fill("the deal registration promised the smb rate")
    dispute.get_by_role("button", name="Open dispute").click()
    dispute.get_by_text("Dispute opened").wait_for()
    disputes = page.get_by_role("table", name="Your disputes and their outcome")
    disputes.get_by_role("row").filter(has_text=story.last_sale).get_by_text("open", exact=True).wait_for()
    screenshot(page, "partner-statements")
    page.get_by_role("button", name="Confirm statement").click()
    page.get_by_text(f"You confirmed the statement for {month_name(story.last_period)}.").wait_for()
    page.get_by_text("Confirmed by").wait_for()
    with workspace.api("admin") as api:
        opened = ok(api.get("/v1/disputes", params={"partner_id": story.partner_id, "status": "open"}))["items"]
    assert any(d["sale_id"] == story.last_sale and d["claimed_amount"] == "12.50" for d in opened)


def month_name(period: str) -> str:
    return datetime.strptime(period, "%Y-%m").strftime("%B %Y")


def test_a_reclassification_by_staff_reaches_the_partners_open_page_without_a_reload(
    workspace: Workspace, story: Story, browser: Any, page: Any
) -> None:
    partner_page = page
    partner_page.goto(workspace.link("partner", story.partner_id))
    row = partner_page.get_by_role("row").filter(has_text=story.this_sale)
    row.get_by_text("$100.00").wait_for()
    marker = partner_page.evaluate("() => { window.__notReloaded = true; return true }")

    staff_context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-US", timezone_id="UTC")
    try:
        staff = staff_context.new_page()
        open_as(staff, workspace, "admin", None, f"#/staff/accounts/{story.account_id}")
        form = staff.locator("form").filter(has=staff.get_by_role("button", name="Reclassify"))
        form.get_by_label("New classification").select_option("smb")
        form.get_by_label("Effective from (UTC)").fill(f"{story.this_period}-01T00:00")
        form.get_by_label("Reason").fill("moved to the SMB segment")
        clicked = time.monotonic()
        form.get_by_role("button", name="Reclassify").click()
        # 0.08 x 2000.00 under smb, and the recalculation that moved it, on the page the partner never reloaded.
        row.get_by_text("$160.00").wait_for(timeout=15_000)
        shown = time.monotonic() - clicked
        row.get_by_text("reclassified from commercial to smb").wait_for()
        print(f"\nreclassification: {shown * 1000:.0f} ms from the staff's click to the partner's new figure")
        form.get_by_text("Reclassified as smb").wait_for()
    finally:
        staff_context.close()
    changes = partner_page.get_by_role("heading", name=f"Recalculations that moved {month_name(story.this_period)}")
    changes.wait_for()
    cause = partner_page.get_by_role("listitem").filter(has_text="moved to the SMB segment")
    cause.filter(has_text="+$60.00").first.wait_for()
    screenshot(partner_page, "partner-earnings")
    assert marker and partner_page.evaluate("window.__notReloaded === true")


def test_an_fx_rate_and_its_correction_reach_the_partners_open_page_with_their_cause(
    workspace: Workspace, story: Story, page: Any, browser: Any
) -> None:
    """A THB sale under a programme settling in USD waits for its rate; staff enter it, then correct it, in the
    staff UI; the partner's page, never reloaded, prices the sale and then shows the correction and its cause."""
    sku, program, sale = f"SERVICES-{story.sku}", f"USD-{story.program}", story.sale_id("THB")
    with workspace.api("admin") as api:
        ok(api.put(f"/v1/products/{sku}", json={"name": "Services", "category": "services", "rebate_eligible": True}))
        ok(api.post("/v1/programs", json={
            "code": program, "name": "Services rebate, paid in USD", "kind": "base_rebate",
            "valid_from": "2020-01-01T00:00:00Z", "settlement_currency": "USD",
            "rules": [{"category": "services", "rate": "0.05"}]}))
        workspace.publish_sale(sale_id=sale, partner_id=story.partner_id, account_id=story.account_id, sku=sku,
                               amount="100000.00", currency="THB")
    page.goto(workspace.link("partner", story.partner_id))
    row = page.get_by_role("row").filter(has_text=sale)
    row.get_by_text("exchange rate").wait_for()

    staff_context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-US", timezone_id="UTC")
    try:
        staff = staff_context.new_page()
        open_as(staff, workspace, "admin", None, "#/staff/fx")
        form = staff.locator("form").filter(has=staff.get_by_role("button", name="Save rate"))
        for rate in ("0.0283", "0.0290"):
            form.get_by_label("Base currency").fill("THB")
            form.get_by_label("Quote currency").fill("USD")
            form.get_by_label("Rate", exact=True).fill(rate)
            form.get_by_label("Effective from (UTC)").fill(f"{story.this_period}-01T00:00")
            clicked = time.monotonic()
            form.get_by_role("button", name="Save rate").click()
            row.get_by_text("$141.50" if rate == "0.0283" else "$145.00").wait_for()
            shown = (time.monotonic() - clicked) * 1000
            print(f"\nFX rate {rate}: {shown:.0f} ms from the staff's click to the partner's new figure")
        staff.get_by_role("table", name="THB/USD: every rate entered").get_by_text("0.0283").first.wait_for()
    finally:
        staff_context.close()
    row.get_by_text("at 0.029").first.wait_for()
    row.get_by_text("correcting 0.0283").wait_for()
    page.get_by_role("listitem").filter(has_text="The THB/USD rate from").filter(has_text="+$3.50").first.wait_for()


def test_staff_approve_a_fund_request_pay_a_claim_and_settle_a_dispute_and_the_partner_sees_the_outcome(
    workspace: Workspace, story: Story, page: Any, browser: Any
) -> None:
    with workspace.api("partner", story.partner_id) as partner_api, workspace.api("admin") as admin_api:
        balances = ok(partner_api.get(f"/v1/partners/{story.partner_id}/fund-balances"))["items"]
        available = next(Decimal(b["available"]) for b in balances if b["fund_code"] == story.fund)
        wanted = str(available + 100)
        start = (datetime.now(UTC) + timedelta(days=30)).date().isoformat()
        end = (datetime.now(UTC) + timedelta(days=40)).date().isoformat()
        request = ok(partner_api.post(f"/v1/funds/{story.fund}/requests", json={
            "partner_id": story.partner_id, "amount": wanted, "activity": "Trade fair stand in Malmö",
            "planned_start": start, "planned_end": end}))
        assert request["status"] == "submitted", request
        dispute = ok(partner_api.post("/v1/disputes", json={
            "partner_id": story.partner_id, "period": story.last_period, "currency": "USD",
            "claimed_amount": "10.00", "reason": "the November volume bonus was not paid"}))
        # Another sale earns the MDF the request needs, so it can be approved.
        workspace.publish_sale(sale_id=story.sale_id("MORE"), partner_id=story.partner_id,
                               account_id=story.account_id, sku=story.sku, amount="3000.00")
        wait_for("the balance to cover the request", lambda: any(
            b["fund_code"] == story.fund and Decimal(b["available"]) >= Decimal(wanted)
            for b in ok(admin_api.get(f"/v1/partners/{story.partner_id}/fund-balances"))["items"]))

    open_as(page, workspace, "admin", None, "#/staff/queues")
    card = page.get_by_role("listitem").filter(has_text="Trade fair stand in Malmö")
    card.wait_for()
    page.get_by_role("listitem").filter(has_text="the November volume bonus was not paid").wait_for()
    screenshot(page, "staff-queues")
    card.get_by_role("button", name="Review").click()
    decide = card.get_by_role("form", name="Decide fund request Trade fair stand in Malmö")
    decide.get_by_label("Decision").select_option("approve")
    decide.get_by_label("Reason").fill("fits the fair budget")
    decide.get_by_role("button", name="Record decision").click()
    page.get_by_text("Decide fund request Trade fair stand in Malmö: approve recorded.").first.wait_for()
    card.wait_for(state="detached")

    claim = page.get_by_role("listitem").filter(has_text="webinar-invoice.pdf")
    claim.get_by_role("button", name="Review").click()
    pay = claim.get_by_role("form")
    pay.get_by_label("Decision").select_option("approve")
    pay.get_by_role("button", name="Record decision").click()
    claim.wait_for(state="detached")

    disputed = page.get_by_role("listitem").filter(has_text="the November volume bonus was not paid")
    disputed.get_by_role("button", name="Review").click()
    settle = disputed.get_by_role("form")
    settle.get_by_label("Decision").select_option("accept")
    settle.get_by_label("Settlement amount").fill("7.50")
    settle.get_by_label("Reason").fill("half the bonus, agreed with the partner manager")
    settle.get_by_role("button", name="Record decision").click()
    disputed.wait_for(state="detached")

    partner_context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-US", timezone_id="UTC")
    try:
        partner = partner_context.new_page()
        open_as(partner, workspace, "partner", story.partner_id, "#/funds")
        decided = partner.get_by_role("listitem").filter(has_text="Trade fair stand in Malmö")
        decided.get_by_text("approved", exact=True).wait_for()
        decided.get_by_text("fits the fair budget").wait_for()
        paid = partner.get_by_role("table", name="Your claims").get_by_role("row").filter(has_text="$250.00")
        paid.get_by_text("paid", exact=True).wait_for()
        partner.evaluate("route => { window.location.hash = route }", f"#/statements/{story.last_period}")
        outcome = partner.get_by_role("table", name="Your disputes and their outcome").get_by_role("row").filter(
            has_text="whole statement")
        outcome.get_by_text("accepted", exact=True).wait_for()
        outcome.get_by_text("+$7.50").first.wait_for()
        outcome.get_by_text(f"in {month_name(story.this_period)}").first.wait_for()
    finally:
        partner_context.close()
    with workspace.api("admin") as api:
        assert ok(api.get(f"/v1/fund-requests/{request['id']}"))["status"] == "approved"
        settled = ok(api.get(f"/v1/disputes/{dispute['id']}"))
        assert (settled["status"], settled["settlement"]["amount"]) == ("accepted", "7.50")


def test_a_partner_subscribes_a_webhook_sees_its_secret_once_and_pauses_it(
    workspace: Workspace, story: Story, page: Any
) -> None:
    open_as(page, workspace, "partner", story.partner_id, "#/webhooks")
    form = page.locator("form").filter(has=page.get_by_role("button", name="Create subscription"))
    form.get_by_label("Receiver URL").fill("http://127.0.0.1:9/partner-hooks")
    form.get_by_label("accrual.adjusted").check()
    form.get_by_label("dispute.resolved").check()
    form.get_by_role("button", name="Create subscription").click()
    form.get_by_text("whsec_").wait_for()
    card = page.get_by_role("listitem").filter(has_text="http://127.0.0.1:9/partner-hooks")
    card.get_by_text("accrual.adjusted, dispute.resolved").wait_for()
    card.get_by_role("button", name="Manage").click()
    card.get_by_role("button", name="Pause").click()
    card.get_by_text("paused", exact=True).wait_for()
    card.get_by_role("button", name="Resume").click()
    card.get_by_text("active", exact=True).wait_for()
    card.get_by_role("button", name="Deliveries").click()
    card.get_by_text("Nothing delivered yet").or_(card.get_by_role("table")).first.wait_for()
    with workspace.api("partner", story.partner_id) as api:
        subscriptions = ok(api.get("/v1/webhooks"))["items"]
    mine = next(s for s in subscriptions if s["url"] == "http://127.0.0.1:9/partner-hooks")
    assert (mine["status"], mine["partner_id"], "secret" in mine) == ("active", story.partner_id, False)


def test_an_answer_the_api_refuses_shows_the_problems_detail_next_to_the_field(
    workspace: Workspace, story: Story, page: Any
) -> None:
    open_as(page, workspace, "partner", story.partner_id, "#/accounts")
    form = page.locator("form").filter(has=page.get_by_role("button", name="Preregister"))
    form.get_by_label("Company name").fill("Göteborg Foods")
    form.get_by_label("Country (2-letter code)").fill("XX")
    form.get_by_label("Industry").fill("food")
    form.get_by_role("button", name="Preregister").click()
    alert = form.get_by_role("alert")
    alert.get_by_text("'XX' is not an ISO 3166-1 alpha-2 country code").first.wait_for()
    country = form.get_by_label("Country (2-letter code)")
    assert country.get_attribute("aria-invalid") == "true"
    described = country.get_attribute("aria-describedby") or ""
    error_id = next(part for part in described.split() if part.endswith("-error"))
    assert "is not an ISO 3166-1 alpha-2 country code" in page.locator(f"[id='{error_id}']").inner_text()
    # Corrected, it goes through.
    country.fill("SE")
    form.get_by_role("button", name="Preregister").click()
    form.get_by_text("Preregistered").wait_for()
    page.get_by_role("table", name="Your customer preregistrations").get_by_text("pending", exact=True).first.wait_for()


def test_the_workspace_works_at_a_phones_width(workspace: Workspace, story: Story, phone_page: Any) -> None:
    page = phone_page
    page.goto(workspace.link("partner", story.partner_id))
    page.get_by_role("heading", name="Earnings", level=1).wait_for()
    nav = page.get_by_role("navigation", name="Workspace")
    assert not nav.is_visible()  # collapsed behind the menu button
    page.get_by_role("row").filter(has_text=story.this_sale).first.wait_for()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    screenshot(page, "phone-earnings")
    page.get_by_role("button", name="Menu").click()
    nav.get_by_role("link", name="Funds").click()
    page.get_by_role("heading", name="Marketing funds", level=1).wait_for()
    assert not nav.is_visible()
    form = page.locator("form").filter(has=page.get_by_role("button", name="Apply"))
    form.get_by_label("Fund").select_option(story.fund)
    form.get_by_label("Amount").fill("20.00")
    form.get_by_label("Activity").fill("Customer breakfast")
    form.get_by_role("button", name="Apply").tap()
    form.get_by_text("Approved at once").wait_for()
    page.get_by_role("listitem").filter(has_text="Customer breakfast").get_by_text("approved", exact=True).wait_for()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    screenshot(page, "phone-funds")
