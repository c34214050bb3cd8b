/**
 * The unsubscribe page's HTML (GET /t/u/{token}) and its confirmation (POST): small, in the tenant's
 * name, without JavaScript, every value escaped (docs/api/tracking.md#the-unsubscribe-page). The
 * forms post back to the page's own URL, so the token never appears anywhere else.
 */

export interface PageGroup {
  id: number;
  name: string;
  description: string;
  /** True when the recipient has unsubscribed from this group. */
  unsubscribed: boolean;
}

export interface PageModel {
  tenantName: string;
  recipient: string;
  groups: PageGroup[];
  /** True when the recipient is on the tenant's global unsubscribe list already. */
  globallyUnsubscribed: boolean;
}

export function escapeHtml(s: string): string {
  return s
    .replace(/&/g, "&amp;")
    .replace(/</g, "&lt;")
    .replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;")
    .replace(/'/g, "&#39;");
}

const STYLE = `body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;max-width:36rem;margin:2rem auto;padding:0 1rem;line-height:1.5;color:#1a1a1a;background:#fff}
h1{font-size:1.4rem}fieldset{border:1px solid #bbb;border-radius:6px;margin:1rem 0;padding:.75rem 1rem}
legend{font-weight:600}label{display:block;margin:.4rem 0}.desc{display:block;color:#555;font-size:.9rem;margin-left:1.6rem}
button{font:inherit;padding:.5rem 1rem;margin:.25rem .5rem .25rem 0;border-radius:6px;border:1px solid #1a1a1a;background:#fff;cursor:pointer}
button.primary{background:#1a1a1a;color:#fff}button:focus-visible,input:focus-visible{outline:3px solid #1565c0;outline-offset:2px}
.status{padding:.75rem 1rem;border-radius:6px;background:#e8f5e9;border:1px solid #2e7d32}`;

function layout(title: string, body: string): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex, nofollow">
<title>${escapeHtml(title)}</title>
<style>${STYLE}</style>
</head>
<body>
<main>
${body}
</main>
</body>
</html>
`;
}

export function renderUnsubscribePage(m: PageModel): string {
  const tenant = escapeHtml(m.tenantName);
  const groups =
    m.groups.length === 0
      ? ""
      : `<form method="post">
<fieldset>
<legend>Email types from ${tenant}</legend>
<p>Tick the types of email to change, then choose what to do with them.</p>
${m.groups
  .map(
    (g) =>
      `<label><input type="checkbox" name="group_id" value="${g.id}"> ${escapeHtml(g.name)} <em>(${
        g.unsubscribed ? "unsubscribed" : "subscribed"
      })</em>${g.description ? `<span class="desc">${escapeHtml(g.description)}</span>` : ""}</label>`,
  )
  .join("\n")}
</fieldset>
<button type="submit" name="action" value="unsubscribe_group">Unsubscribe from the selected</button>
<button type="submit" name="action" value="resubscribe_group">Resubscribe to the selected</button>
</form>`;
  const all = m.globallyUnsubscribed
    ? `<p class="status" role="status">${escapeHtml(m.recipient)} is unsubscribed from all email from ${tenant}.</p>`
    : `<form method="post">
<button class="primary" type="submit" name="action" value="unsubscribe_all">Unsubscribe from all email from ${tenant}</button>
</form>`;
  return layout(
    `Unsubscribe from ${m.tenantName}`,
    `<h1>Email preferences for ${escapeHtml(m.recipient)}</h1>
<p>You are receiving this because ${tenant} sent email to ${escapeHtml(m.recipient)}.</p>
${groups}
${all}`,
  );
}

export function renderConfirmation(tenantName: string, message: string, backTo: string): string {
  return layout(
    `Preferences saved — ${tenantName}`,
    `<h1>Preferences saved</h1>
<p class="status" role="status">${escapeHtml(message)}</p>
<p><a href="${escapeHtml(backTo)}">Back to your email preferences for ${escapeHtml(tenantName)}</a></p>`,
  );
}

export function renderError(title: string, message: string): string {
  return layout(title, `<h1>${escapeHtml(title)}</h1>\n<p role="alert">${escapeHtml(message)}</p>`);
}
