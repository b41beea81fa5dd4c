// Small shared pieces: figures, dates, problems, fields, tables that become cards on a phone, forms.

import { memo, useEffect, useId, useRef, useState, type ReactNode } from "react";
import { ApiError, load, newIdempotencyKey } from "./api";
import { formatDate, formatDateTime, humanize } from "./format";
import { announceChange } from "./hooks";
import { formatMoney, isNegative } from "./money";

export const Money = memo(function Money({ amount, currency, signed = false }: { amount: string; currency: string; signed?: boolean }) {
  const negative = isNegative(amount);
  return (
    <span className={`money${negative ? " negative" : ""}`} data-amount={amount} data-currency={currency}>
      {formatMoney(amount, currency, signed)}
    </span>
  );
});

export function When({ value, dateOnly = false }: { value: string | null | undefined; dateOnly?: boolean }) {
  if (!value) return <span>—</span>;
  return <time dateTime={value}>{dateOnly ? formatDate(value) : formatDateTime(value)}</time>;
}

export function Badge({ value }: { value: string }) {
  return <span className={`badge badge-${value.replace(/[^a-z_]/gi, "")}`}>{humanize(value)}</span>;
}

export function ProblemAlert({ error, title }: { error: ApiError | null | undefined; title?: string }) {
  if (!error) return null;
  const fields = error.problem.errors ?? [];
  return (
    <div className="alert alert-error" role="alert">
      <p>
        <strong>{title ?? error.problem.title ?? "Something went wrong"}:</strong> {error.message}
      </p>
      {fields.length > 0 && (
        <ul>
          {fields.map((field, index) => (
            <li key={index}>
              {field.loc.filter((part) => part !== "body").join(".")}: {field.msg}
            </li>
          ))}
        </ul>
      )}
    </div>
  );
}

export function Loading({ what }: { what: string }) {
  return (
    <p className="loading" role="status">
      Loading {what}…
    </p>
  );
}

export function Empty({ children }: { children: ReactNode }) {
  return <div className="empty">{children}</div>;
}

/** Shows a panel's data once loaded, its problem if it failed, and a loading line before. */
export function Loaded<T>({
  state,
  what,
  children,
}: {
  state: { data?: T; items?: T; error: ApiError | null; loading: boolean };
  what: string;
  children: (data: T) => ReactNode;
}) {
  const value = (state.data ?? state.items) as T | undefined;
  return (
    <>
      {state.error && <ProblemAlert error={state.error} title={`Could not load ${what}`} />}
      {value === undefined ? !state.error && <Loading what={what} /> : children(value)}
    </>
  );
}

export interface Column<T> {
  header: string;
  cell: (row: T) => ReactNode;
  className?: string;
}

const Row = memo(function Row<T>({ row, columns }: { row: T; columns: Column<T>[] }) {
  return (
    <tr>
      {columns.map((column) => (
        <td key={column.header} data-label={column.header} className={column.className}>
          <div className="cell">{column.cell(row)}</div>
        </td>
      ))}
    </tr>
  );
}) as <T>(props: { row: T; columns: Column<T>[] }) => ReactNode;

/** A table on a wide screen; on a phone each row becomes a card whose cells carry their column's name. */
export function DataTable<T>({
  caption,
  rows,
  columns,
  rowKey,
}: {
  caption: string;
  rows: T[];
  columns: Column<T>[];
  rowKey: (row: T) => string;
}) {
  return (
    <div className="table-wrap">
      <table className="data">
        <caption>{caption}</caption>
        <thead>
          <tr>
            {columns.map((column) => (
              <th key={column.header} scope="col" className={column.className}>
                {column.header}
              </th>
            ))}
          </tr>
        </thead>
        <tbody>
          {rows.map((row) => (
            <Row key={rowKey(row)} row={row} columns={columns} />
          ))}
        </tbody>
      </table>
    </div>
  );
}

export function LoadMore({ list }: { list: { hasMore: boolean; loadingMore: boolean; loadMore: () => void } }) {
  if (!list.hasMore) return null;
  return (
    <button type="button" className="secondary" onClick={() => list.loadMore()} disabled={list.loadingMore}>
      {list.loadingMore ? "Loading…" : "Load more"}
    </button>
  );
}

interface FieldProps {
  label: string;
  name: string;
  error?: string;
  hint?: string;
  required?: boolean;
}

function FieldShell({ label, error, hint, id, children }: FieldProps & { id: string; children: ReactNode }) {
  return (
    <div className={`field${error ? " has-error" : ""}`}>
      <label htmlFor={id}>{label}</label>
      {children}
      {hint && (
        <p className="hint" id={`${id}-hint`}>
          {hint}
        </p>
      )}
      {error && (
        <p className="field-error" id={`${id}-error`}>
          {error}
        </p>
      )}
    </div>
  );
}

function describedBy(id: string, hint?: string, error?: string) {
  return [hint ? `${id}-hint` : "", error ? `${id}-error` : ""].filter(Boolean).join(" ") || undefined;
}

export function TextField(
  props: FieldProps & {
    type?: string;
    defaultValue?: string;
    placeholder?: string;
    inputMode?: "decimal" | "text" | "numeric" | "url";
    pattern?: string;
    autoComplete?: string;
    list?: string;
  },
) {
  const id = useId();
  const { label, name, error, hint, required, type = "text", ...rest } = props;
  return (
    <FieldShell label={label} name={name} error={error} hint={hint} id={id}>
      <input
        id={id}
        name={name}
        type={type}
        required={required}
        aria-invalid={error ? true : undefined}
        aria-describedby={describedBy(id, hint, error)}
        {...rest}
      />
    </FieldShell>
  );
}

export function TextArea(props: FieldProps & { defaultValue?: string }) {
  const id = useId();
  const { label, name, error, hint, required, defaultValue } = props;
  return (
    <FieldShell label={label} name={name} error={error} hint={hint} id={id}>
      <textarea
        id={id}
        name={name}
        required={required}
        rows={2}
        defaultValue={defaultValue}
        aria-invalid={error ? true : undefined}
        aria-describedby={describedBy(id, hint, error)}
      />
    </FieldShell>
  );
}

export function SelectField(
  props: FieldProps & { options: (string | { value: string; label: string })[]; defaultValue?: string; onChange?: (value: string) => void },
) {
  const id = useId();
  const { label, name, error, hint, required, options, defaultValue, onChange } = props;
  return (
    <FieldShell label={label} name={name} error={error} hint={hint} id={id}>
      <select
        id={id}
        name={name}
        required={required}
        defaultValue={defaultValue}
        onChange={onChange ? (event) => onChange(event.target.value) : undefined}
        aria-invalid={error ? true : undefined}
        aria-describedby={describedBy(id, hint, error)}
      >
        {options.map((option) => {
          const value = typeof option === "string" ? option : option.value;
          const text = typeof option === "string" ? humanize(option) : option.label;
          return (
            <option key={value} value={value}>
              {text}
            </option>
          );
        })}
      </select>
    </FieldShell>
  );
}

export function Checkbox({ label, name, value, defaultChecked }: { label: string; name: string; value?: string; defaultChecked?: boolean }) {
  const id = useId();
  return (
    <div className="check">
      <input id={id} type="checkbox" name={name} value={value ?? "on"} defaultChecked={defaultChecked} />
      <label htmlFor={id}>{label}</label>
    </div>
  );
}

/** Submission state of one form or action: busy, the problem it answered, a success message. */
export function useSubmit() {
  const [state, setState] = useState<{ busy: boolean; error: ApiError | null; message: string }>({
    busy: false,
    error: null,
    message: "",
  });
  const key = useRef<{ body: string; key: string } | null>(null);
  const idempotencyKeyFor = (body: unknown) => {
    const text = JSON.stringify(body);
    if (key.current?.body !== text) key.current = { body: text, key: newIdempotencyKey() };
    return key.current.key;
  };
  const run = async (action: () => Promise<string | void>): Promise<boolean> => {
    setState({ busy: true, error: null, message: "" });
    try {
      const message = await action();
      key.current = null;
      setState({ busy: false, error: null, message: message ?? "" });
      announceChange();
      return true;
    } catch (error) {
      const problem =
        error instanceof ApiError
          ? error
          : new ApiError(0, { title: "Error", detail: error instanceof Error ? error.message : String(error) });
      setState({ busy: false, error: problem, message: "" });
      if (problem.status === 412 || problem.status === 409) announceChange();
      return false;
    }
  };
  const fieldErrors = state.error?.fieldErrors() ?? {};
  return { ...state, run, idempotencyKeyFor, fieldErrors, reset: () => setState({ busy: false, error: null, message: "" }) };
}

export function FormStatus({ submit }: { submit: ReturnType<typeof useSubmit> }) {
  return (
    <>
      <ProblemAlert error={submit.error} />
      <p className="success" role="status" aria-live="polite">
        {submit.message}
      </p>
    </>
  );
}

export function formValues(form: HTMLFormElement): Record<string, string> {
  const out: Record<string, string> = {};
  new FormData(form).forEach((value, key) => {
    if (typeof value === "string") out[key] = value.trim();
  });
  return out;
}

export function formList(form: HTMLFormElement, name: string): string[] {
  return new FormData(form).getAll(name).filter((v): v is string => typeof v === "string");
}

/** A panel section with a heading at the right level, labelled by it for landmark navigation. */
export function Section({ title, level = 2, children, actions, id }: { title: string; level?: 2 | 3; children: ReactNode; actions?: ReactNode; id?: string }) {
  const headingId = useId();
  const Heading = level === 2 ? "h2" : "h3";
  return (
    <section className={`panel-section level-${level}`} aria-labelledby={headingId} id={id}>
      <div className="section-head">
        <Heading id={headingId}>{title}</Heading>
        {actions}
      </div>
      {children}
    </section>
  );
}

export function Details({ summary, children, defaultOpen }: { summary: ReactNode; children: ReactNode; defaultOpen?: boolean }) {
  return (
    <details className="disclosure" open={defaultOpen}>
      <summary>{summary}</summary>
      <div className="disclosure-body">{children}</div>
    </details>
  );
}

/** Reads a resource when an action on it is opened, so the change is sent with its ETag (If-Match). */
export function useEtagOf(resource: string) {
  const [state, setState] = useState<{ ready: boolean; error: ApiError | null }>({ ready: false, error: null });
  const [round, setRound] = useState(0);
  useEffect(() => {
    let live = true;
    setState({ ready: false, error: null });
    if (!resource) return;
    load(resource)
      .then(() => live && setState({ ready: true, error: null }))
      .catch((error: unknown) => live && setState({ ready: false, error: error instanceof ApiError ? error : null }));
    return () => {
      live = false;
    };
  }, [resource, round]);
  return { ...state, reload: () => setRound((n) => n + 1) };
}

/** A link to a part of this page that moves there without touching the hash route. */
export function JumpLink({ target, children }: { target: string; children: ReactNode }) {
  return (
    <a
      href={`#${target}`}
      onClick={(event) => {
        event.preventDefault();
        const element = document.getElementById(target);
        if (!element) return;
        element.scrollIntoView({ block: "start" });
        const heading = element.querySelector<HTMLElement>("h2, h3");
        if (heading) {
          heading.tabIndex = -1;
          heading.focus({ preventScroll: true });
        }
      }}
    >
      {children}
    </a>
  );
}
