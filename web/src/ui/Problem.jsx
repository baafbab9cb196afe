// One API or network error: its problem+json title and detail (and where it came from).
export function Problem({ error, onClose }) {
  if (!error) return null;
  const status = error.status ? ` (${error.status})` : '';
  return (
    <div class="problem" role="alert" data-testid="problem">
      <strong class="problem-title">{error.title || 'Error'}{status}</strong>
      {error.detail && <span class="problem-detail"> {error.detail}</span>}
      {error.field && <span class="problem-meta"> field: {error.field}</span>}
      {error.requestId && <span class="problem-meta"> request {error.requestId}</span>}
      {onClose && <button type="button" class="link close" onClick={onClose} aria-label="dismiss">×</button>}
    </div>
  );
}
