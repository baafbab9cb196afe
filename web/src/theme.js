// Light and dark themes: prefers-color-scheme unless the user chose one (localStorage).
const KEY = 'mecapy.theme';
const media = window.matchMedia('(prefers-color-scheme: dark)');

export function storedTheme() {
  const t = localStorage.getItem(KEY);
  return t === 'dark' || t === 'light' ? t : null;
}

export function currentTheme() {
  return storedTheme() || (media.matches ? 'dark' : 'light');
}

export function applyTheme(theme = currentTheme()) {
  document.documentElement.dataset.theme = theme;
  return theme;
}

export function toggleTheme() {
  const next = currentTheme() === 'dark' ? 'light' : 'dark';
  localStorage.setItem(KEY, next);
  return applyTheme(next);
}

export function onSystemThemeChange(callback) {
  media.addEventListener('change', () => {
    if (!storedTheme()) callback(applyTheme());
  });
}
