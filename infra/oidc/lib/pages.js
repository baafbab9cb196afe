// HTML of the login form. Field names and ids follow Keycloak's login theme
// (form#kc-form-login, input[name=username], input[name=password], submit name=login).

export function escapeHtml(value) {
  return String(value ?? '')
    .replaceAll('&', '&amp;')
    .replaceAll('<', '&lt;')
    .replaceAll('>', '&gt;')
    .replaceAll('"', '&quot;')
    .replaceAll("'", '&#39;');
}

const STYLE = `
body { font-family: system-ui, sans-serif; background: #f2f4f7; margin: 0; }
main { max-width: 360px; margin: 10vh auto; background: #fff; padding: 2rem; border-radius: 8px;
       box-shadow: 0 1px 4px rgba(0,0,0,.15); }
h1 { font-size: 1.3rem; margin-top: 0; }
label { display: block; margin-top: 1rem; font-size: .9rem; }
input[type=text], input[type=password] { width: 100%; box-sizing: border-box; padding: .5rem; margin-top: .25rem; }
.actions { margin-top: 1.5rem; display: flex; gap: .5rem; }
.error { background: #fdecea; color: #8a1c1c; padding: .6rem; border-radius: 4px; margin-bottom: 1rem; }
.note { color: #667; font-size: .8rem; margin-top: 1.5rem; }
`;

function layout(title, body) {
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
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

export function loginPage({ action, clientId, username, error }) {
  const errorBlock = error
    ? `<div id="input-error" class="error" role="alert">${escapeHtml(error)}</div>\n`
    : '';
  return layout('Sign in to MecaPy', `<h1>Sign in to MecaPy</h1>
${errorBlock}<form id="kc-form-login" action="${escapeHtml(action)}" method="post">
<label for="username">Username or email</label>
<input id="username" name="username" type="text" value="${escapeHtml(username)}" autocomplete="username" autofocus>
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password">
<div class="actions">
<input id="kc-login" name="login" type="submit" value="Sign In">
<input id="kc-cancel" name="cancel" type="submit" value="Cancel">
</div>
</form>
<p class="note">Local development identity provider (client: ${escapeHtml(clientId)}).</p>`);
}

export function messagePage(title, message) {
  return layout(title, `<h1>${escapeHtml(title)}</h1>\n<p id="kc-error-message">${escapeHtml(message)}</p>`);
}

// RP-initiated logout confirmation, like Keycloak's ("Do you want to log out?"). `form` is
// oidc-provider's hidden form#op.logoutForm (its xsrf token); the button submits it with
// logout=yes. Our own page: oidc-provider's default one loads a web font from the internet.
export function logoutPage(form) {
  return layout('Logging out', `<h1>Logging out</h1>
<p>Do you want to log out?</p>
${form}
<div class="actions">
<button id="kc-logout" type="submit" form="op.logoutForm" name="logout" value="yes" autofocus>Logout</button>
<button id="kc-stay" type="submit" form="op.logoutForm">Stay signed in</button>
</div>`);
}
