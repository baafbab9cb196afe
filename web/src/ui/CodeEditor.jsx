// A textarea with line numbers; static-validation findings are marked in the gutter and
// their messages shown beside their line.
import { useRef, useState } from 'preact/hooks';

const LINE_HEIGHT = 20; // px, the same in style.css (.editor)

export function CodeEditor({ value, onChange, findings = [], readOnly = false }) {
  const [scroll, setScroll] = useState({ top: 0 });
  const area = useRef();
  const lines = Math.max(value.split('\n').length, 12);
  const byLine = new Map();
  for (const f of findings) {
    const line = Math.max(1, Number(f.line) || 1);
    byLine.set(line, [...(byLine.get(line) || []), f]);
  }
  const jump = (f) => {
    const el = area.current;
    const upTo = value.split('\n').slice(0, Math.max(0, (f.line || 1) - 1)).join('\n').length;
    const at = upTo + (f.line > 1 ? 1 : 0) + Math.max(0, (f.column || 1) - 1);
    el.focus();
    el.setSelectionRange(at, at);
  };
  return (
    <div class="editor-wrap">
      <div class="editor" style={{ '--lh': `${LINE_HEIGHT}px` }}>
        <div class="gutter" aria-hidden="true" style={{ transform: `translateY(${-scroll.top}px)` }}>
          {Array.from({ length: lines }, (_, i) => (
            <div key={i} class={byLine.has(i + 1) ? 'ln flagged' : 'ln'} data-line={i + 1}
              title={byLine.has(i + 1) ? byLine.get(i + 1).map((f) => f.message).join('\n') : undefined}>
              {byLine.has(i + 1) && <span class="marker">●</span>}
              {i + 1}
            </div>
          ))}
        </div>
        <textarea ref={area} id="code" spellcheck={false} wrap="off" value={value} readOnly={readOnly}
          onInput={(e) => onChange(e.currentTarget.value)}
          onScroll={(e) => setScroll({ top: e.currentTarget.scrollTop })}
          aria-label="Python code" />
        <div class="findings-layer" aria-live="polite" style={{ transform: `translateY(${-scroll.top}px)` }}>
          {[...byLine.entries()].map(([line, list]) => (
            <div key={line} class="finding-inline" data-testid="finding" data-line={line}
              style={{ top: `${(line - 1) * LINE_HEIGHT}px` }}>
              {list.map((f) => `${f.rule ? `${f.rule}: ` : ''}${f.message}`).join(' · ')}
            </div>
          ))}
        </div>
      </div>
      {findings.length > 0 && (
        <ul class="findings" data-testid="findings">
          {findings.map((f, i) => (
            <li key={i}>
              <button type="button" class="link" onClick={() => jump(f)}>line {f.line}{f.column ? `:${f.column}` : ''}</button>
              {' '}<code>{f.rule}</code> {f.message}
            </li>
          ))}
        </ul>
      )}
    </div>
  );
}
