import { useEffect, useRef, useState } from 'preact/hooks';
import { formatBytes, getFile, listFiles, uploadFile } from '../files.js';
import { Problem } from './Problem.jsx';

const PAGE = 10;

export function FilesPanel({ files, setFiles }) {
  const [problem, setProblem] = useState(null);
  const [uploads, setUploads] = useState([]);
  const [dragging, setDragging] = useState(false);
  const [download, setDownload] = useState(null);
  const [offset, setOffset] = useState(0);
  const [more, setMore] = useState(false);
  const picker = useRef();

  // One page of files, newest first; the compute panel offers them as inputs.
  const refresh = (at = offset) => listFiles({ limit: PAGE, offset: at })
    .then((page) => { setFiles(page.items || []); setMore(Boolean(page.next)); setOffset(at); })
    .catch(setProblem);
  useEffect(() => { refresh(0); }, []);

  const track = (name, patch) => setUploads((list) => list.map((u) => (u.name === name ? { ...u, ...patch } : u)));

  const upload = async (list) => {
    setProblem(null);
    for (const file of list) {
      setUploads((u) => [...u.filter((x) => x.name !== file.name), { name: file.name, size: file.size, progress: 0, state: 'uploading' }]);
      try {
        await uploadFile(file, (progress) => track(file.name, { progress }));
        track(file.name, { progress: 1, state: 'done' });
      } catch (e) {
        track(file.name, { state: 'failed' });
        setProblem(e);
      }
    }
    refresh(0);
  };

  const onDrop = (e) => {
    e.preventDefault();
    setDragging(false);
    upload([...(e.dataTransfer?.files || [])]);
  };

  const fetchDownload = async (file) => {
    setProblem(null);
    try {
      const view = await getFile(file.id);
      setDownload(view);
      window.location.assign(view.download_url);
    } catch (e) {
      setProblem(e);
    }
  };

  return (
    <section class="card files" data-testid="files-panel">
      <h2>Files</h2>
      <div id="dropzone" class={`dropzone${dragging ? ' over' : ''}`}
        onDragOver={(e) => { e.preventDefault(); setDragging(true); }}
        onDragLeave={() => setDragging(false)} onDrop={onDrop}
        onClick={() => picker.current.click()}>
        Drop files here or <span class="link">choose…</span>
        <small>up to 4 MiB sent directly, larger files through a presigned upload</small>
        <input ref={picker} id="file-picker" type="file" multiple hidden
          onChange={(e) => { upload([...e.currentTarget.files]); e.currentTarget.value = ''; }} />
      </div>
      {uploads.map((u) => (
        <div class={`upload ${u.state}`} key={u.name} data-testid="upload" data-name={u.name} data-state={u.state}>
          <span class="name">{u.name} <small>{formatBytes(u.size)}</small></span>
          <progress max="100" value={Math.round(u.progress * 100)} />
          <span class="pct">{Math.round(u.progress * 100)} %</span>
        </div>
      ))}
      <Problem error={problem} onClose={() => setProblem(null)} />
      <table class="list" data-testid="file-list">
        <thead><tr><th>name</th><th>size</th><th>status</th><th /></tr></thead>
        <tbody>
          {files.map((f) => (
            <tr key={f.id} data-filename={f.filename}>
              <td class="name" title={`sha256 ${f.sha256 || '–'}`}>{f.filename}</td>
              <td>{formatBytes(f.size_bytes)}</td>
              <td title={f.altered_reason || ''}>{f.status}</td>
              <td>
                {f.status === 'available' && (
                  <button type="button" class="link download" onClick={() => fetchDownload(f)}>download</button>
                )}
                {f.status === 'altered' && <small class="muted">{f.altered_reason}</small>}
              </td>
            </tr>
          ))}
          {!files.length && <tr><td colSpan="4" class="muted">No files yet.</td></tr>}
        </tbody>
      </table>
      {(offset > 0 || more) && (
        <div class="pager">
          <button type="button" class="link" disabled={offset === 0} onClick={() => refresh(Math.max(0, offset - PAGE))}>newer</button>
          <span class="muted">{offset + 1}–{offset + files.length}</span>
          <button type="button" class="link" disabled={!more} onClick={() => refresh(offset + PAGE)}>older</button>
        </div>
      )}
      {download && (
        <p class="muted" data-testid="download">
          <a href={download.download_url} download={download.filename}>{download.filename}</a>
          {' '}(link valid {download.download_expires_in} s)
        </p>
      )}
    </section>
  );
}
