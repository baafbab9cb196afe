import { useEffect, useState } from 'preact/hooks';
import { configureApi } from '../api.js';
import { clearSession, completeLogin, isCallback, loadSession, logout, startLogin } from '../auth.js';
import { currentTheme, onSystemThemeChange, toggleTheme } from '../theme.js';
import { Problem } from './Problem.jsx';
import { FilesPanel } from './FilesPanel.jsx';
import { ComputePanel } from './ComputePanel.jsx';

export function App({ config }) {
  const [session, setSession] = useState(() => loadSession());
  const [problem, setProblem] = useState(null);
  const [busy, setBusy] = useState(false);
  const [theme, setTheme] = useState(currentTheme());
  const [files, setFiles] = useState([]);

  configureApi({
    baseUrl: config.api_url,
    token: () => session?.access_token,
    onUnauthorized: (error) => {
      clearSession();
      setSession(null);
      setProblem({ title: 'Please log in again', detail: `${error.title}: ${error.detail}` });
    },
  });

  useEffect(() => onSystemThemeChange(setTheme), []);

  // The provider's redirect back: ?code=&state=&iss= or ?error=.
  useEffect(() => {
    const params = new URLSearchParams(window.location.search);
    if (!isCallback(params)) return;
    window.history.replaceState(null, '', window.location.pathname);
    setBusy(true);
    completeLogin(params)
      .then((s) => { setSession(s); setProblem(null); })
      .catch(setProblem)
      .finally(() => setBusy(false));
  }, []);

  const login = () => {
    setBusy(true);
    setProblem(null);
    startLogin(config).catch((e) => { setProblem(e); setBusy(false); });
  };

  return (
    <div class="app">
      <header class="topbar">
        <span class="brand">MecaPy <small>console</small></span>
        <span class="spacer" />
        {session && (
          <span class="user" data-testid="user">
            {session.user?.name || session.user?.username} <small>{session.user?.email}</small>
          </span>
        )}
        <button type="button" id="theme-toggle" class="ghost" onClick={() => setTheme(toggleTheme())}
          title="Switch between light and dark">
          {theme === 'dark' ? '☀ Light' : '☾ Dark'}
        </button>
        {session && <button type="button" id="logout" class="ghost" onClick={() => logout(config)}>Log out</button>}
      </header>
      {problem && <div class="banner"><Problem error={problem} onClose={() => setProblem(null)} /></div>}
      {session ? (
        <main class="workspace">
          <FilesPanel files={files} setFiles={setFiles} />
          <ComputePanel files={files} theme={theme} />
        </main>
      ) : (
        <main class="center">
          <section class="card login-card">
            <h1>MecaPy</h1>
            <p>Upload measurements, run Python computations in isolated containers and look at their results.</p>
            <button type="button" id="login" class="primary" disabled={busy} onClick={login}>
              {busy ? 'Logging in…' : 'Log in'}
            </button>
            <p class="muted">Through the identity provider at {config.issuer}.</p>
          </section>
        </main>
      )}
    </div>
  );
}
