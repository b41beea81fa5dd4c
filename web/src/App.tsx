// The workspace shell: sign-in, who is signed in, the navigation and the open panel (hash routes).

import { useCallback, useEffect, useMemo, useRef, useState, type ReactNode } from "react";
import { configureApi, get } from "./api";
import { clearToken, sessionFromToken, storedSession, storeToken, takeTokenFromLocation, type Session } from "./auth";
import { When } from "./components";
import { useRoute } from "./hooks";
import { RouteBase } from "./nav";
import { SignIn } from "./SignIn";
import type { Partner } from "./types";
import { Earnings } from "./partner/Earnings";
import { Standing } from "./partner/Standing";
import { PartnerAccounts } from "./partner/Accounts";
import { Funds } from "./partner/Funds";
import { Statements } from "./partner/Statements";
import { Webhooks } from "./partner/Webhooks";
import { Queues } from "./staff/Queues";
import { StaffPartners } from "./staff/Partners";
import { StaffAccounts } from "./staff/Accounts";
import { Catalogue } from "./staff/Catalogue";
import { FxRates } from "./staff/FxRates";
import { Recalculations } from "./staff/Recalculations";
import { Periods } from "./staff/Periods";
import { StaffFunds } from "./staff/Funds";

interface View {
  path: string;
  label: string;
  title: string;
  render: (args: { session: Session; rest: string[]; partnerId: string }) => ReactNode;
}

const PARTNER_VIEWS: View[] = [
  { path: "earnings", label: "Earnings", title: "Earnings", render: ({ partnerId, session }) => <Earnings partnerId={partnerId} staff={session.role === "admin"} /> },
  { path: "standing", label: "Tier & BIP", title: "Tier, certifications and BIP progress", render: ({ partnerId }) => <Standing partnerId={partnerId} /> },
  { path: "accounts", label: "Accounts", title: "Accounts and preregistrations", render: ({ partnerId, session }) => <PartnerAccounts partnerId={partnerId} canRegister={session.role === "partner"} /> },
  { path: "funds", label: "Funds", title: "Marketing funds", render: ({ partnerId, session }) => <Funds partnerId={partnerId} isPartner={session.role === "partner"} /> },
  { path: "statements", label: "Statements", title: "Statements and disputes", render: ({ partnerId, rest, session }) => <Statements partnerId={partnerId} period={rest[0]} isPartner={session.role === "partner"} /> },
  { path: "webhooks", label: "Webhooks", title: "Webhook subscriptions", render: ({ partnerId }) => <Webhooks partnerId={partnerId} /> },
];

const STAFF_VIEWS: View[] = [
  { path: "queues", label: "Review queues", title: "Review queues", render: () => <Queues /> },
  { path: "partners", label: "Partners", title: "Partners", render: ({ rest }) => <StaffPartners selected={rest[0]} /> },
  { path: "accounts", label: "Accounts", title: "Accounts", render: ({ rest }) => <StaffAccounts selected={rest[0]} /> },
  { path: "catalogue", label: "Programs & products", title: "Programs and products", render: () => <Catalogue /> },
  { path: "funds", label: "Funds", title: "Marketing funds", render: () => <StaffFunds /> },
  { path: "fx", label: "FX rates", title: "FX rates", render: () => <FxRates /> },
  { path: "recalculations", label: "Recalculations", title: "Recalculation runs", render: () => <Recalculations /> },
  { path: "periods", label: "Period close", title: "Period close", render: () => <Periods /> },
  { path: "webhooks", label: "Webhooks", title: "Webhook subscriptions", render: () => <Webhooks partnerId={null} /> },
];

function initialSession(): { session: Session | null; problem: string } {
  const fromLink = takeTokenFromLocation();
  if (fromLink) {
    try {
      const session = sessionFromToken(fromLink);
      storeToken(session.token);
      return { session, problem: "" };
    } catch (error) {
      return { session: null, problem: error instanceof Error ? error.message : String(error) };
    }
  }
  return { session: storedSession(), problem: "" };
}

export function App() {
  const [{ session, problem }, setAuth] = useState(initialSession);

  // A sign-in link opened while the page is already open (only the fragment changes: no reload).
  useEffect(() => {
    const onHash = () => {
      if (window.location.hash.startsWith("#token=")) setAuth(initialSession());
    };
    window.addEventListener("hashchange", onHash);
    return () => window.removeEventListener("hashchange", onHash);
  }, []);

  const signOut = useCallback((why = "") => {
    clearToken();
    configureApi(null, () => undefined);
    setAuth({ session: null, problem: why });
  }, []);

  // Configured during render, before any child's effect fetches with it.
  useMemo(() => {
    configureApi(session?.token ?? null, (detail) => signOut(`Signed out: ${detail}`));
  }, [session, signOut]);

  useEffect(() => {
    if (!session?.expiresAt) return;
    const left = session.expiresAt.getTime() - Date.now();
    const timer = setTimeout(() => signOut("Your session expired: sign in again with a new link or token."), Math.max(0, Math.min(left, 2_147_000_000)));
    return () => clearTimeout(timer);
  }, [session, signOut]);

  if (!session) {
    return (
      <SignIn
        problem={problem}
        onSignIn={(token) => {
          const next = sessionFromToken(token);
          storeToken(next.token);
          setAuth({ session: next, problem: "" });
          if (!window.location.hash) window.location.hash = next.role === "admin" ? "#/staff/queues" : "#/earnings";
        }}
      />
    );
  }
  return <Workspace session={session} onSignOut={() => signOut()} />;
}

function Workspace({ session, onSignOut }: { session: Session; onSignOut: () => void }) {
  const route = useRoute();
  const [navOpen, setNavOpen] = useState(false);
  const heading = useRef<HTMLHeadingElement>(null);
  const firstRender = useRef(true);
  const isStaff = session.role === "admin";

  let views: View[];
  let base: string;
  let partnerId = session.partnerId ?? "";
  let key: string;
  let rest: string[];
  if (isStaff && route[0] === "partner" && route[1]) {
    partnerId = route[1];
    views = PARTNER_VIEWS;
    base = `#/partner/${encodeURIComponent(partnerId)}/`;
    key = route[2] ?? "earnings";
    rest = route.slice(3);
  } else if (isStaff) {
    views = STAFF_VIEWS;
    base = "#/staff/";
    key = route[0] === "staff" ? route[1] ?? "queues" : "queues";
    rest = route.slice(2);
  } else {
    views = PARTNER_VIEWS;
    base = "#/";
    key = route[0] ?? "earnings";
    rest = route.slice(1);
  }
  const view = views.find((v) => v.path === key) ?? views[0];
  const routeKey = route.join("/");

  useEffect(() => {
    document.title = `${view.title} · Partner Center`;
    setNavOpen(false);
    if (firstRender.current) {
      firstRender.current = false;
      return;
    }
    heading.current?.focus();
  }, [routeKey, view.title]);

  const partner = usePartnerName(session.role === "partner" ? session.partnerId : isStaff && route[0] === "partner" ? partnerId : null);

  return (
    <div className="app">
      <a
        className="skip-link"
        href="#main"
        onClick={(event) => {
          event.preventDefault();
          document.getElementById("main")?.focus();
        }}
      >
        Skip to content
      </a>
      <header className="topbar">
        <div className="brand">
          <span className="logo" aria-hidden="true">
            ◆
          </span>
          <span>Partner Center</span>
        </div>
        <div className="who" aria-label="Signed in as">
          <span className="who-name">{session.sub}</span>
          <span className="who-role">{isStaff ? "staff (admin)" : session.role}</span>
          {session.role === "partner" && <span className="who-partner">{partner ?? session.partnerId}</span>}
          {session.expiresAt && (
            <span className="who-exp">
              until <When value={session.expiresAt.toISOString()} />
            </span>
          )}
          <button type="button" className="secondary small" onClick={onSignOut}>
            Sign out
          </button>
        </div>
        <button
          type="button"
          className="nav-toggle"
          aria-expanded={navOpen}
          aria-controls="primary-nav"
          onClick={() => setNavOpen((open) => !open)}
        >
          Menu
        </button>
      </header>
      <div className="layout">
        <nav id="primary-nav" className={`sidenav${navOpen ? " open" : ""}`} aria-label="Workspace">
          {isStaff && route[0] === "partner" && (
            <p className="nav-context">
              Viewing partner <strong>{partner ?? partnerId}</strong>
              <br />
              <a href={`#/staff/partners/${encodeURIComponent(partnerId)}`}>Back to staff view</a>
            </p>
          )}
          <ul>
            {views.map((v) => (
              <li key={v.path}>
                <a href={`${base}${v.path}`} aria-current={v.path === view.path ? "page" : undefined}>
                  {v.label}
                </a>
              </li>
            ))}
          </ul>
        </nav>
        <main id="main" tabIndex={-1}>
          <h1 ref={heading} tabIndex={-1}>
            {view.title}
          </h1>
          <RouteBase.Provider value={base}>{view.render({ session, rest, partnerId })}</RouteBase.Provider>
        </main>
      </div>
    </div>
  );
}

function usePartnerName(partnerId: string | null): string | null {
  const [name, setName] = useState<string | null>(null);
  useEffect(() => {
    setName(null);
    if (!partnerId) return;
    let live = true;
    get<Partner>(`/v1/partners/${encodeURIComponent(partnerId)}`)
      .then((p) => live && setName(p.name))
      .catch(() => undefined);
    return () => {
      live = false;
    };
  }, [partnerId]);
  return name;
}
