// Write code (or pick an uploaded .py file), choose inputs and args, submit, follow the job.
import { useEffect, useRef, useState } from 'preact/hooks';
import { cancelJob, FINAL, listJobs, splitArgs, submitJob, watchJob } from '../compute.js';
import { CodeEditor } from './CodeEditor.jsx';
import { JobView } from './JobView.jsx';
import { Problem } from './Problem.jsx';

const EXAMPLE = `import numpy as np

# Inputs are under /work/inputs/<filename>; write outputs to /work/out/.
x = np.linspace(0, 10, 50)
y = 2.5 * x + 1.0
np.savetxt("/work/out/curve.csv", np.column_stack([x, y]), delimiter=",",
           header="x,y", comments="")
print(f"points={x.size} slope=2.5 intercept=1.0")
`;

export function ComputePanel({ files, theme }) {
  const [code, setCode] = useState(EXAMPLE);
  const [codeFile, setCodeFile] = useState('');
  const [inputs, setInputs] = useState([]);
  const [args, setArgs] = useState('');
  const [findings, setFindings] = useState([]);
  const [problem, setProblem] = useState(null);
  const [busy, setBusy] = useState(false);
  const [job, setJob] = useState(null);
  const [jobProblem, setJobProblem] = useState(null);
  const [jobs, setJobs] = useState([]);
  const stop = useRef(() => {});

  const refreshJobs = () => listJobs({ limit: 10 }).then((page) => setJobs(page.items || [])).catch(setProblem);
  useEffect(() => { refreshJobs(); return () => stop.current(); }, []);

  const follow = (id) => {
    stop.current();
    setJobProblem(null);
    stop.current = watchJob(id, (j) => {
      setJob(j);
      if (FINAL.has(j.status)) refreshJobs();
    }, setJobProblem);
  };

  const available = files.filter((f) => f.status === 'available');
  const pyFiles = available.filter((f) => /\.py$/i.test(f.filename));

  const submit = async (e) => {
    e.preventDefault();
    setBusy(true);
    setProblem(null);
    setFindings([]);
    try {
      const accepted = await submitJob({ code, fileId: codeFile || undefined, inputIds: inputs, args: splitArgs(args) });
      setJob(null);
      follow(accepted.job_id);
      refreshJobs();
    } catch (err) {
      setProblem(err);
      if (err.findings?.length) setFindings(err.findings);
    } finally {
      setBusy(false);
    }
  };

  const cancel = async (id) => {
    try {
      setJob(await cancelJob(id));
      refreshJobs();
    } catch (err) {
      setJobProblem(err);
    }
  };

  const toggleInput = (id) => setInputs((list) => (list.includes(id) ? list.filter((x) => x !== id) : [...list, id]));

  return (
    <div class="compute-col">
      <form class="card compute" onSubmit={submit} data-testid="compute-form">
        <h2>Computation <small>python</small></h2>
        <label class="row">
          Code from
          <select id="code-file" value={codeFile} onChange={(e) => setCodeFile(e.currentTarget.value)}>
            <option value="">the editor</option>
            {pyFiles.map((f) => <option key={f.id} value={f.id}>{f.filename}</option>)}
          </select>
        </label>
        {!codeFile && <CodeEditor value={code} onChange={(v) => { setCode(v); if (findings.length) setFindings([]); }} findings={findings} />}
        <fieldset class="inputs-pick">
          <legend>Input files <small>(the files listed on the left; the job reads /work/inputs/&lt;name&gt;)</small></legend>
          {available.length === 0 && <span class="muted">Upload files to use them as inputs.</span>}
          {inputs.length > 0 && <span class="muted">{inputs.length} selected</span>}
          {available.map((f) => (
            <label key={f.id} class="check">
              <input type="checkbox" data-filename={f.filename} checked={inputs.includes(f.id)} onChange={() => toggleInput(f.id)} />
              {f.filename}
            </label>
          ))}
        </fieldset>
        <label class="row">
          Arguments
          <input id="args" type="text" value={args} placeholder="e.g. --points 50" onInput={(e) => setArgs(e.currentTarget.value)} />
        </label>
        <div class="row">
          <button type="submit" id="submit" class="primary" disabled={busy}>{busy ? 'Submitting…' : 'Run'}</button>
          <span class="muted">Outputs: files the job writes under /work/out/.</span>
        </div>
        <Problem error={problem} onClose={() => setProblem(null)} />
      </form>
      <JobView job={job} problem={jobProblem} theme={theme} onCancel={cancel} />
      <section class="card jobs">
        <h2>Jobs <button type="button" class="link" onClick={refreshJobs}>refresh</button></h2>
        <table class="list" data-testid="job-list">
          <thead><tr><th>job</th><th>status</th><th>created</th><th /></tr></thead>
          <tbody>
            {jobs.map((j) => (
              <tr key={j.id} class={job?.id === j.id ? 'selected' : ''}>
                <td><button type="button" class="link mono" onClick={() => follow(j.id)}>{j.id.slice(0, 8)}</button></td>
                <td><span class={`status ${j.status}`}>{j.status}</span></td>
                <td>{new Date(j.created_at).toLocaleString()}</td>
                <td>{j.status === 'queued' && <button type="button" class="link" onClick={() => cancel(j.id)}>cancel</button>}</td>
              </tr>
            ))}
            {!jobs.length && <tr><td colSpan="4" class="muted">No jobs yet.</td></tr>}
          </tbody>
        </table>
      </section>
    </div>
  );
}
