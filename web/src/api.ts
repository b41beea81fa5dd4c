// The one way this page talks to Partner Hub: same-origin fetches of /v1/… with the bearer token.
// Errors are application/problem+json (RFC 9457) and surface as ApiError carrying the problem.

import type { Page, Problem } from "./types";

export class ApiError extends Error {
  readonly status: number;
  readonly problem: Problem;

  constructor(status: number, problem: Problem) {
    super(problem.detail || problem.title || `The request failed with status ${status}.`);
    this.status = status;
    this.problem = problem;
  }

  /** The validation messages of a 422, keyed by the field they name (the last part of `loc`). */
  fieldErrors(): Record<string, string> {
    const out: Record<string, string> = {};
    for (const error of this.problem.errors ?? []) {
      const path = error.loc.filter((part) => part !== "body" && part !== "query" && part !== "path");
      const field = String([...path].reverse().find((part) => typeof part === "string") ?? "_");
      out[field] = out[field] ? `${out[field]}; ${error.msg}` : error.msg;
    }
    return out;
  }
}

type UnauthorizedHandler = (detail: string) => void;

let token: string | null = null;
let onUnauthorized: UnauthorizedHandler = () => undefined;
const etags = new Map<string, string>();

export function configureApi(bearer: string | null, unauthorized: UnauthorizedHandler): void {
  token = bearer;
  onUnauthorized = unauthorized;
  etags.clear();
}

export function newIdempotencyKey(): string {
  if (typeof crypto.randomUUID === "function") return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
}

export interface RequestOptions {
  method?: "GET" | "POST" | "PUT" | "PATCH" | "DELETE";
  body?: unknown;
  /** A creating POST: sent with this Idempotency-Key so a retry cannot create twice. */
  idempotencyKey?: string;
  /** The resource whose last-seen ETag goes in If-Match (and whose ETag the answer refreshes). */
  resource?: string;
  /** False when the answer is another resource (a claim created on a request): the request's ETag is then dropped. */
  answersResource?: boolean;
  accept?: string;
  signal?: AbortSignal;
}

export function query(params: Record<string, string | number | boolean | null | undefined>): string {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== null && value !== undefined && value !== "") search.set(key, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

async function send(path: string, options: RequestOptions): Promise<Response> {
  const headers: Record<string, string> = { Accept: options.accept ?? "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  if (options.body !== undefined) headers["Content-Type"] = "application/json";
  if (options.idempotencyKey) headers["Idempotency-Key"] = options.idempotencyKey;
  const etagKey = options.resource ?? path;
  const etag = etags.get(etagKey);
  if (options.resource && etag) headers["If-Match"] = etag;
  let response: Response;
  try {
    response = await fetch(path, {
      method: options.method ?? "GET",
      headers,
      body: options.body === undefined ? undefined : JSON.stringify(options.body),
      signal: options.signal,
      credentials: "same-origin",
      cache: "no-store",
    });
  } catch (error) {
    if (error instanceof DOMException && error.name === "AbortError") throw error;
    throw new ApiError(0, {
      title: "Network error",
      detail: "Partner Hub could not be reached. Check your connection; the page retries on its own.",
    });
  }
  const answered = response.headers.get("ETag");
  const reading = options.method === undefined || options.method === "GET";
  if (reading && answered) etags.set(path, answered);
  if (!reading && options.resource && response.ok) {
    if (answered && options.answersResource !== false) etags.set(options.resource, answered);
    else etags.delete(options.resource);
  }
  if (!response.ok) {
    let problem: Problem = { status: response.status, title: response.statusText };
    try {
      const parsed: unknown = await response.json();
      if (parsed && typeof parsed === "object") problem = parsed as Problem;
    } catch {
      problem.detail = `The server answered ${response.status} ${response.statusText}.`;
    }
    if (!problem.detail) problem.detail = problem.title ?? `The server answered ${response.status}.`;
    const error = new ApiError(response.status, problem);
    if (response.status === 401) onUnauthorized(error.message);
    if (response.status === 412 && options.resource) etags.delete(etagKey);
    throw error;
  }
  return response;
}

export async function request<T>(path: string, options: RequestOptions = {}): Promise<T> {
  const response = await send(path, options);
  if (response.status === 204) return undefined as T;
  const text = await response.text();
  return (text ? JSON.parse(text) : undefined) as T;
}

export const get = <T>(path: string, signal?: AbortSignal) => request<T>(path, { signal });

export function hasEtag(resource: string): boolean {
  return etags.has(resource);
}

/** Reads a resource so that a later change to it is sent with its ETag in If-Match. */
export async function load<T>(resource: string): Promise<T> {
  return request<T>(resource);
}

export function getPage<T>(path: string, params: Record<string, string | number | null | undefined>, cursor?: string | null) {
  return request<Page<T>>(path + query({ ...params, cursor: cursor ?? undefined }));
}

/** Every page of a list (for the small lists a panel shows whole, such as one period's ledger). */
export async function getAll<T>(path: string, params: Record<string, string | number | null | undefined> = {}, max = 20) {
  const items: T[] = [];
  let cursor: string | null = null;
  for (let page = 0; page < max; page++) {
    const answer: Page<T> = await getPage<T>(path, { limit: 500, ...params }, cursor);
    items.push(...answer.items);
    cursor = answer.next_cursor;
    if (!cursor) break;
  }
  return items;
}

/** Fetches a file with the bearer token and hands it to the browser as a download. */
export async function download(path: string, accept: string, fallbackName: string): Promise<string> {
  const response = await send(path, { accept });
  const blob = await response.blob();
  const disposition = response.headers.get("Content-Disposition") ?? "";
  const match = /filename\*?=(?:UTF-8'')?"?([^";]+)"?/i.exec(disposition);
  const name = match ? decodeURIComponent(match[1]) : fallbackName;
  const url = URL.createObjectURL(blob);
  const link = document.createElement("a");
  link.href = url;
  link.download = name;
  link.style.display = "none";
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
  return name;
}
