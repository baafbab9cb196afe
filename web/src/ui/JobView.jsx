// One job: its state live, stdout/stderr, outputs (PNG shown, CSV plotted) and the run's facts.
import { useEffect, useState } from 'preact/hooks';
import { fetchLink } from '../api.js';
import { FINAL } from '../compute.js';
import { formatBytes } from '../files.js';
import { isCsv, isPng } from '../results.js';
import { CsvPlot } from './CsvPlot.jsx';
import { Problem } from './Problem.jsx';

function useText(url) {
  const [state, setState] = useState({ text: null, error: null });
  useEffect(() => {
    if (!url) return;
    let live = true;
    fetchLink(url).then((text) => live && setState({ text, error: null }))
      .catch((error) => live && setState({ text: null, error }));
    return () => { live = false; };
  }, [url]);
  return state;
}

function Stream({ name, url, truncated }) {
  const { text, error } = useText(url);
  if (!url) return null;
  return (
    <div class="stream">
      <h4>{name}{truncated && <small> (truncated)</small>}</h4>
      <Problem error={error} />
      <pre data-testid={name}>{text === null ? '…' : text || '(empty)'}</pre>
    </div>
  );
}

function CsvOutput({ output, theme }) {
  const { text, error } = useText(output.url);
  return (
    <figure class="output">
      <Problem error={error} />
      {text !== null && <CsvPlot name={output.name} text={text} theme={theme} />}
      <figcaption><a href={output.url}>{output.name}</a> {formatBytes(output.size)}</figcaption>
    </figure>
  );
}

// The job's paths are relative to its working directory, /work.
const workPath = (p) => (p.startsWith('/') ? p : `/work/${p}`);

const when = (t) => (t ? new Date(t).toLocaleString() : '–');

function Facts({ job }) {
  const limits = Object.entries(job.limits || {}).map(([k, v]) => `${k} ${v}`).join(', ');
  const rows = [
    ['status', job.status],
    ['exit code', job.exit_code ?? '–'],
    ['error', job.error || '–'],
    ['attempts', job.attempts ?? '–'],
    ['duration', job.duration_ms != null ? `${job.duration_ms} ms` : '–'],
    ['tool', job.tool],
    ['image', job.image || '–'],
    ['image digest', job.image_digest || '–'],
    ['limits', limits || '–'],
    ['args', (job.args || []).join(' ') || '–'],
    ['code sha256', job.code_sha256 || '–'],
    ['created', when(job.created_at)],
    ['started', when(job.started_at)],
    ['finished', when(job.finished_at)],
  ];
  return (
    <table class="facts" data-testid="facts">
      <tbody>
        {rows.map(([k, v]) => <tr key={k}><th>{k}</th><td class={k.includes('sha') || k.includes('digest') ? 'mono' : ''}>{String(v)}</td></tr>)}
        <tr>
          <th>inputs</th>
          <td>
            {(job.inputs || []).length === 0 ? '–' : (
              <ul class="inputs">
                {job.inputs.map((i) => (
                  <li key={i.file_id}><code>{workPath(i.path || `inputs/${i.filename}`)}</code> {formatBytes(i.size)} <span class="mono">sha256 {i.sha256}</span></li>
                ))}
              </ul>
            )}
          </td>
        </tr>
      </tbody>
    </table>
  );
}

export function JobView({ job, problem, theme, onCancel }) {
  if (!job) return <Problem error={problem} />;
  const outputs = job.links?.outputs || [];
  return (
    <section class="card job" data-testid="job" data-status={job.status}>
      <h2>
        Job <code>{job.id.slice(0, 8)}</code>{' '}
        <span class={`status ${job.status}`} data-testid="job-status">{job.status}</span>
        {!FINAL.has(job.status) && <span class="spinner" aria-label="running" />}
        {job.status === 'queued' && <button type="button" class="ghost" onClick={() => onCancel(job.id)}>Cancel</button>}
      </h2>
      <Problem error={problem} />
      <div class="streams">
        <Stream name="stdout" url={job.links?.stdout} truncated={job.stdout_truncated} />
        <Stream name="stderr" url={job.links?.stderr} truncated={job.stderr_truncated} />
      </div>
      {outputs.length > 0 && <h3>Outputs{job.outputs_truncated && <small> (truncated)</small>}</h3>}
      <div class="outputs">
        {outputs.map((o) => {
          if (isPng(o.name)) {
            return (
              <figure class="output" key={o.name}>
                <img src={o.url} alt={o.name} data-testid="png-output" />
                <figcaption><a href={o.url}>{o.name}</a> {formatBytes(o.size)}</figcaption>
              </figure>
            );
          }
          if (isCsv(o.name)) return <CsvOutput key={o.name} output={o} theme={theme} />;
          return <p key={o.name}><a href={o.url}>{o.name}</a> {formatBytes(o.size)}</p>;
        })}
      </div>
      <h3>Facts of the run</h3>
      <Facts job={job} />
    </section>
  );
}
