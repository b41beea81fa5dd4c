"""The Partner Center is usable without a mouse and passes an automated accessibility check: axe-core (web/'s own
devDependency, no CDN) finds no serious or critical violation on any main screen, for a partner and for staff, at a
desktop's and at a phone's width; the keyboard alone reaches the navigation and a form, and Enter submits it."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.conftest import ROOT
from tests.web.conftest import Workspace
from tests.web.test_workspace import Story, story_for

pytestmark = pytest.mark.browser

AXE = ROOT / "web" / "node_modules" / "axe-core" / "axe.min.js"
PARTNER_SCREENS = ["#/earnings", "#/standing", "#/accounts", "#/funds", "#/statements", "#/webhooks"]
STAFF_SCREENS = ["#/staff/queues", "#/staff/partners", "#/staff/accounts", "#/staff/catalogue", "#/staff/funds",
                 "#/staff/fx", "#/staff/recalculations", "#/staff/periods", "#/staff/webhooks"]
PHONE_PARTNER_SCREENS = ["#/earnings", "#/funds", "#/statements"]
PHONE_STAFF_SCREENS = ["#/staff/queues", "#/staff/partners"]


@pytest.fixture(scope="module")
def story(workspace: Workspace) -> Story:
    return story_for(workspace)


def serious_violations(page: Any) -> list[str]:
    """axe-core's serious and critical findings on the page as it is now, one line each."""
    if not page.evaluate("typeof window.axe === 'object'"):
        if not AXE.exists():
            pytest.fail(f"{AXE} is missing: run `./run web` (npm ci in web/) first")
        page.evaluate(AXE.read_text())  # evaluated, not a <script> tag: the page's policy refuses inline scripts
    found: list[dict[str, Any]] = page.evaluate(
        """async () => (await axe.run(document, {resultTypes: ["violations"]})).violations
            .filter(v => v.impact === "serious" || v.impact === "critical")
            .map(v => ({id: v.id, impact: v.impact, help: v.help,
                        nodes: v.nodes.slice(0, 3).map(n => n.target.join(" "))}))"""
    )
    return [f"{v['impact']} {v['id']}: {v['help']} at {v['nodes']}" for v in found]


def visit(page: Any, route: str) -> None:
    page.evaluate("route => { window.location.hash = route }", route)
    page.wait_for_function("() => document.querySelector('main h1') !== null")
    page.wait_for_function("() => !document.querySelector('.loading')")


def check_screens(page: Any, link: str, routes: list[str]) -> dict[str, list[str]]:
    page.goto(link)
    page.wait_for_selector("main h1")
    failures = {}
    for route in routes:
        visit(page, route)
        found = serious_violations(page)
        if found:
            failures[route] = found
    return failures


def test_the_sign_in_screen_has_no_serious_violation(workspace: Workspace, page: Any) -> None:
    page.goto(workspace.url)
    page.get_by_label("Bearer token").wait_for()
    assert serious_violations(page) == []
    # The check is live: an unlabelled button added for a moment is found.
    page.evaluate("() => document.body.insertAdjacentHTML('beforeend', '<button id=bare></button>')")
    assert any("button-name" in v for v in serious_violations(page))
    page.evaluate("() => document.getElementById('bare').remove()")
    # A token that is not one says why, and a real one signs in.
    page.get_by_label("Bearer token").fill("not-a-token")
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("alert").get_by_text("not a JSON Web Token").wait_for()
    assert serious_violations(page) == []
    page.get_by_label("Bearer token").fill(workspace.token("admin"))
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("heading", name="Review queues", level=1).wait_for()
    page.get_by_role("button", name="Sign out").click()
    page.get_by_label("Bearer token").wait_for()
    assert page.evaluate("sessionStorage.getItem('partnerhub.token')") is None
    # A token the APIs refuse (its signature altered) returns to the sign-in screen with the problem's detail.
    head, payload, signature = workspace.token("admin").split(".")
    page.goto(f"{workspace.url}/#token={head}.{payload}.{signature[::-1]}")
    page.get_by_role("alert").get_by_text("Signed out:").wait_for()
    page.get_by_label("Bearer token").wait_for()


def test_partner_screens_have_no_serious_violation(workspace: Workspace, story: Story, page: Any) -> None:
    assert check_screens(page, workspace.link("partner", story.partner_id), PARTNER_SCREENS) == {}


def test_staff_screens_have_no_serious_violation(workspace: Workspace, story: Story, page: Any) -> None:
    screens = [*STAFF_SCREENS, f"#/staff/partners/{story.partner_id}", f"#/staff/accounts/{story.account_id}"]
    assert check_screens(page, workspace.link("admin"), screens) == {}


def test_phone_screens_have_no_serious_violation(workspace: Workspace, story: Story, phone_page: Any) -> None:
    failures = check_screens(phone_page, workspace.link("partner", story.partner_id), PHONE_PARTNER_SCREENS)
    phone_page.get_by_role("button", name="Menu").click()  # the open menu too
    found = serious_violations(phone_page)
    if found:
        failures["menu"] = found
    failures |= check_screens(phone_page, workspace.link("admin"), PHONE_STAFF_SCREENS)
    assert failures == {}


def focused(page: Any) -> dict[str, Any]:
    described: dict[str, Any] = page.evaluate(
        """() => { const e = document.activeElement;
                   return {tag: e.tagName, text: (e.textContent || "").trim(), name: e.getAttribute("name"),
                           inNav: Boolean(e.closest("nav[aria-label='Workspace']")),
                           outline: getComputedStyle(e).outlineStyle}; }"""
    )
    return described


def tab_until(page: Any, wanted: Any, limit: int = 60) -> dict[str, Any]:
    for _ in range(limit):
        page.keyboard.press("Tab")
        now = focused(page)
        if wanted(now):
            return now
    raise AssertionError(f"Tab never reached it; the focus ended on {focused(page)}")


def test_the_keyboard_alone_reaches_the_navigation_and_submits_a_form(
    workspace: Workspace, story: Story, page: Any
) -> None:
    page.goto(workspace.link("partner", story.partner_id))
    page.get_by_role("heading", name="Earnings", level=1).wait_for()
    skip = tab_until(page, lambda f: f["tag"] == "A", limit=1)
    assert skip["text"] == "Skip to content" and skip["outline"] != "none"
    link = tab_until(page, lambda f: f["inNav"] and f["text"] == "Accounts", limit=12)
    assert link["outline"] != "none"  # the focus is visible
    page.keyboard.press("Enter")
    page.get_by_role("heading", name="Accounts and preregistrations", level=1).wait_for()
    tab_until(page, lambda f: f["name"] == "name")
    page.keyboard.type("Uppsala Tools AB")
    page.keyboard.press("Tab")
    page.keyboard.type("SE")
    page.keyboard.press("Tab")
    assert focused(page)["name"] == "industry"
    page.keyboard.type("manufacturing")
    page.keyboard.press("Enter")
    page.get_by_text("Preregistered: account").wait_for()
