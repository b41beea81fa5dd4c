import { useId, useState } from "react";

export function SignIn({ problem, onSignIn }: { problem: string; onSignIn: (token: string) => void }) {
  const [error, setError] = useState("");
  const id = useId();
  const shown = error || problem;
  return (
    <main className="signin" id="main">
      <div className="signin-card">
        <h1>Partner Center</h1>
        <p>
          Sign in with the link you were sent (it opens this page already signed in), or paste a bearer token
          from your identity provider. On a development machine, <code>./run partnerhub token --role partner
          --partner-id &lt;id&gt;</code> prints one.
        </p>
        <div aria-live="assertive">
          {shown && (
            <p className="alert alert-error" role="alert">
              {shown}
            </p>
          )}
        </div>
        <form
          onSubmit={(event) => {
            event.preventDefault();
            const token = String(new FormData(event.currentTarget).get("token") ?? "").trim();
            if (!token) {
              setError("Paste a token first.");
              return;
            }
            try {
              onSignIn(token);
            } catch (failure) {
              setError(failure instanceof Error ? failure.message : String(failure));
            }
          }}
        >
          <div className="field">
            <label htmlFor={`${id}-token`}>Bearer token</label>
            <textarea id={`${id}-token`} name="token" rows={4} spellCheck={false} autoComplete="off" required />
          </div>
          <button type="submit">Sign in</button>
        </form>
      </div>
    </main>
  );
}
