import { render } from 'preact';
import 'uplot/dist/uPlot.min.css';
import './style.css';
import { App } from './ui/App.jsx';
import { loadConfig } from './config.js';
import { applyTheme } from './theme.js';
import { Problem } from './ui/Problem.jsx';

applyTheme();
const root = document.getElementById('app');
root.textContent = ''; // the boot message
loadConfig()
  .then((config) => render(<App config={config} />, root))
  .catch((problem) => render(<main class="center"><Problem error={problem} /></main>, root));
