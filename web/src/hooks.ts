// Live data: each open panel polls the APIs it shows, once a second while the tab is visible, never with two
// requests of one panel in flight, and re-renders only what changed (unchanged parts keep their identity).

import { useCallback, useEffect, useRef, useState } from "react";
import { ApiError } from "./api";

export const POLL_INTERVAL_MS = 1000;
const CHANGED_EVENT = "partnerhub:changed";

/** Tells every polling panel to refresh now (after the user changed something). */
export function announceChange(): void {
  window.dispatchEvent(new Event(CHANGED_EVENT));
}

/** Returns `next`, reusing every part of `previous` that is deeply equal, so memoised rows skip rendering. */
export function shareStructure<T>(previous: unknown, next: T): T {
  if (previous === next) return next;
  if (Array.isArray(previous) && Array.isArray(next)) {
    let same = previous.length === next.length;
    const out = next.map((item, index) => {
      const shared = shareStructure(previous[index], item);
      if (shared !== previous[index]) same = false;
      return shared;
    });
    return (same ? previous : out) as T;
  }
  if (
    previous && next && typeof previous === "object" && typeof next === "object" &&
    !Array.isArray(previous) && !Array.isArray(next)
  ) {
    const prev = previous as Record<string, unknown>;
    const nxt = next as Record<string, unknown>;
    const keys = Object.keys(nxt);
    let same = keys.length === Object.keys(prev).length;
    const out: Record<string, unknown> = {};
    for (const key of keys) {
      out[key] = shareStructure(prev[key], nxt[key]);
      if (out[key] !== prev[key]) same = false;
    }
    return (same ? prev : out) as T;
  }
  return next;
}

export interface Polled<T> {
  data: T | undefined;
  error: ApiError | null;
  loading: boolean;
  refresh: () => void;
}

function asApiError(error: unknown): ApiError {
  if (error instanceof ApiError) return error;
  return new ApiError(0, { title: "Error", detail: error instanceof Error ? error.message : String(error) });
}

/**
 * Loads with `fetcher` and keeps it fresh: every `interval` ms while the page is visible (paused while
 * hidden), at once after any announced change; a new round starts only when the previous one has answered.
 */
export function usePolled<T>(fetcher: () => Promise<T>, deps: unknown[], interval: number | null = POLL_INTERVAL_MS): Polled<T> {
  const [state, setState] = useState<{ data: T | undefined; error: ApiError | null; loading: boolean }>({
    data: undefined,
    error: null,
    loading: true,
  });
  const fetcherRef = useRef(fetcher);
  fetcherRef.current = fetcher;
  const kick = useRef<() => void>(() => undefined);

  useEffect(() => {
    let stopped = false;
    let inFlight = false;
    let again = false;
    let failures = 0;
    let timer: ReturnType<typeof setTimeout> | undefined;
    setState({ data: undefined, error: null, loading: true });

    const schedule = () => {
      if (stopped || interval === null) return;
      clearTimeout(timer);
      // After failures the next round waits longer (2 s, 4 s, … up to 30 s) instead of asking every second.
      timer = setTimeout(run, failures ? Math.min(interval * 2 ** failures, 30_000) : interval);
    };
    const run = async () => {
      if (stopped) return;
      if (document.hidden && interval !== null) return; // resumed by visibilitychange
      if (inFlight) {
        again = true;
        return;
      }
      inFlight = true;
      clearTimeout(timer);
      try {
        const data = await fetcherRef.current();
        failures = 0;
        if (!stopped) {
          setState((previous) => {
            const shared = shareStructure(previous.data, data);
            if (shared === previous.data && previous.error === null && !previous.loading) return previous;
            return { data: shared, error: null, loading: false };
          });
        }
      } catch (error) {
        failures += 1;
        if (!stopped) {
          const problem = asApiError(error);
          setState((previous) =>
            previous.error?.message === problem.message && !previous.loading
              ? previous
              : { data: previous.data, error: problem, loading: false },
          );
        }
      } finally {
        inFlight = false;
        if (again) {
          again = false;
          void run();
        } else {
          schedule();
        }
      }
    };
    const onVisible = () => {
      if (!document.hidden) void run();
    };
    const onChanged = () => void run();
    kick.current = onChanged;
    document.addEventListener("visibilitychange", onVisible);
    window.addEventListener(CHANGED_EVENT, onChanged);
    void run();
    return () => {
      stopped = true;
      clearTimeout(timer);
      document.removeEventListener("visibilitychange", onVisible);
      window.removeEventListener(CHANGED_EVENT, onChanged);
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, deps);

  const refresh = useCallback(() => kick.current(), []);
  return { ...state, refresh };
}

/** The hash route as its path segments: "#/statements/2026-11" → ["statements", "2026-11"]. */
export function useRoute(): string[] {
  const read = () =>
    window.location.hash
      .replace(/^#\/?/, "")
      .split("?")[0]
      .split("/")
      .filter(Boolean)
      .map(decodeURIComponent);
  const [route, setRoute] = useState(read);
  useEffect(() => {
    const onChange = () => setRoute(read());
    window.addEventListener("hashchange", onChange);
    return () => window.removeEventListener("hashchange", onChange);
  }, []);
  return route;
}

/** A list read page by page: the first page stays live (polled); "Load more" appends the next ones. */
export function usePagedList<T>(
  fetchPage: (cursor: string | null) => Promise<{ items: T[]; next_cursor: string | null }>,
  deps: unknown[],
  interval: number | null = POLL_INTERVAL_MS,
) {
  const first = usePolled(() => fetchPage(null), deps, interval);
  const [more, setMore] = useState<{ items: T[]; cursor: string | null; loading: boolean; error: ApiError | null }>({
    items: [],
    cursor: null,
    loading: false,
    error: null,
  });
  useEffect(() => setMore({ items: [], cursor: null, loading: false, error: null }), deps); // eslint-disable-line react-hooks/exhaustive-deps
  const nextCursor = more.items.length ? more.cursor : first.data?.next_cursor ?? null;
  const loadMore = useCallback(async () => {
    if (!nextCursor) return;
    setMore((m) => ({ ...m, loading: true, error: null }));
    try {
      const page = await fetchPage(nextCursor);
      setMore((m) => ({ items: [...m.items, ...page.items], cursor: page.next_cursor, loading: false, error: null }));
    } catch (error) {
      setMore((m) => ({ ...m, loading: false, error: asApiError(error) }));
    }
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [nextCursor]);
  // A list that grew at its head while more pages were loaded repeats an item at the page boundary: shown once.
  const firstItems = first.data?.items;
  let items: T[] | undefined;
  if (firstItems) {
    const shown = new Set(firstItems.map(identity));
    items = [...firstItems, ...more.items.filter((item) => !shown.has(identity(item)))];
  }
  return {
    items,
    error: first.error ?? more.error,
    loading: first.loading,
    loadingMore: more.loading,
    hasMore: Boolean(nextCursor),
    loadMore,
    refresh: first.refresh,
  };
}

function identity(item: unknown): string {
  if (item && typeof item === "object") {
    const record = item as Record<string, unknown>;
    for (const key of ["id", "entry_id", "code", "sku"]) {
      if (typeof record[key] === "string") return `${key}:${record[key]}`;
    }
  }
  return JSON.stringify(item);
}
