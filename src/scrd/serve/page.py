"""``GET /``: one self-contained page (no external asset: hospital machines are often offline) where a
person drops or chooses an image and sees the heat-map panel, the score, the decision and how the
score ranks among the run's held-out normal images.

The page records its state on ``<body data-state=...>`` (loading, ready, scoring, done, error) and
counts script errors (``data-errors``), which the browser test reads back.
"""

from __future__ import annotations

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; padding: 0 1em; color: #222; }
h1 { margin-bottom: 0.2em; } .muted { color: #666; font-size: 0.9em; }
#drop { border: 2px dashed #999; border-radius: 8px; padding: 2em; text-align: center; margin: 1em 0;
  background: #fafafa; } #drop.over { border-color: #1f77b4; background: #eef5fb; }
#status { min-height: 1.4em; margin: 0.5em 0; } .error { color: #a33; font-weight: bold; }
table { border-collapse: collapse; margin: 0.5em 0; } th, td { padding: 0.3em 0.9em; text-align: left;
  border-bottom: 1px solid #eee; } th { background: #f4f4f4; }
.abnormal { color: #b00; font-weight: bold; } .normal { color: #2a7a2a; font-weight: bold; }
#panel { max-width: 100%; border: 1px solid #ddd; margin-top: 0.5em; }
"""

SCRIPT = r"""
(function () {
  var body = document.body, statusBox = document.getElementById('status');
  var model = null;
  function state(s) {
    body.setAttribute('data-state', s);
    body.setAttribute('data-errors', String(window.scrdErrors.length));
  }
  function text(id, value) { document.getElementById(id).textContent = value; }
  function show(message, isError) { statusBox.textContent = message; statusBox.className = isError ? 'error' : ''; }
  function fmt(x) { return (x === null || x === undefined) ? 'n/a' : Number(x).toPrecision(4); }

  fetch('/model').then(function (r) { return r.json(); }).then(function (m) {
    model = m;
    var calibration = m.calibration ? ('threshold ' + fmt(m.threshold) + ' at specificity ' +
      m.calibration.target_specificity + ' on ' + m.calibration.n_images + ' normal images') :
      'not calibrated: scores only, no decision';
    text('model', 'model ' + m.model_sha256.slice(0, 12) + ' \u00b7 ' + m.method + ' ' + m.arch + ', ' +
      m.image_size + ' px \u00b7 ' + calibration + ' \u00b7 ' + m.normal_scores.count +
      ' held-out normal scores stored');
    state('ready');
  }).catch(function (e) { show('cannot read the model description: ' + e, true); state('error'); });

  function score(file) {
    if (!file) { return; }
    state('scoring');
    show('scoring ' + file.name + '\u2026', false);
    document.getElementById('result').hidden = true;
    var panel = document.getElementById('panel');
    panel.hidden = true;
    var form = new FormData();
    form.append('file', file, file.name);
    fetch('/score?heatmap=1', { method: 'POST', body: form }).then(function (r) {
      return r.json().then(function (j) { return { ok: r.ok, status: r.status, json: j }; });
    }).then(function (answer) {
      if (!answer.ok) {
        show('not scored (HTTP ' + answer.status + '): ' + (answer.json.detail || 'unknown error'), true);
        state('error');
        return;
      }
      var r = answer.json.results[0];
      text('r-file', r.file);
      text('r-score', fmt(r.score));
      var decision = document.getElementById('r-decision');
      decision.textContent = r.decision ? r.decision.toUpperCase() : 'no decision (uncalibrated model)';
      decision.className = r.decision || '';
      text('r-threshold', r.threshold === null ? 'none (run scrd calibrate)' : fmt(r.threshold));
      text('r-percentile', r.normal_percentile === null ? 'n/a (the model stores no held-out normal scores)' :
        r.normal_percentile.toFixed(1) + 'th percentile: higher than ' + r.normal_percentile.toFixed(1) +
        ' % of the ' + r.normal_images + ' held-out normal images');
      text('r-model', r.model_sha256.slice(0, 12));
      document.getElementById('result').hidden = false;
      panel.onload = function () { panel.hidden = false; show('', false); state('done'); };
      panel.onerror = function () { show('the heat-map panel could not be shown', true); state('error'); };
      panel.src = 'data:image/png;base64,' + r.heatmap_png;
    }).catch(function (e) { show('request failed: ' + e, true); state('error'); });
  }

  var input = document.getElementById('file'), drop = document.getElementById('drop');
  input.addEventListener('change', function () { score(input.files[0]); });
  drop.addEventListener('dragover', function (e) { e.preventDefault(); drop.className = 'over'; });
  drop.addEventListener('dragleave', function () { drop.className = ''; });
  drop.addEventListener('drop', function (e) {
    e.preventDefault(); drop.className = '';
    if (e.dataTransfer.files.length) { score(e.dataTransfer.files[0]); }
  });
})();
"""

PAGE = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>scrd: anomaly score of an image</title>
<link rel="icon" href="data:,">
<script>window.scrdErrors = [];
window.addEventListener('error', function (e) {{ window.scrdErrors.push(String(e.message || e));
  document.body && document.body.setAttribute('data-errors', String(window.scrdErrors.length)); }});</script>
<style>{STYLE}</style></head>
<body data-state="loading" data-errors="0">
<h1>scrd: how unusual is this image?</h1>
<p id="model" class="muted">reading the model's description\u2026</p>
<div id="drop">Drop an image here (PNG, JPEG, TIFF, BMP or DICOM), or
<label>choose a file: <input type="file" id="file"
 accept=".png,.jpg,.jpeg,.tif,.tiff,.bmp,.dcm,.dicom,image/*,application/dicom"></label></div>
<div id="status" role="status"></div>
<table id="result" hidden>
<tr><th>file</th><td id="r-file"></td></tr>
<tr><th>anomaly score</th><td id="r-score"></td></tr>
<tr><th>decision</th><td id="r-decision"></td></tr>
<tr><th>threshold</th><td id="r-threshold"></td></tr>
<tr><th>among normal images</th><td id="r-percentile"></td></tr>
<tr><th>model</th><td id="r-model"></td></tr>
</table>
<img id="panel" alt="original | anomaly map | overlay" hidden>
<p class="muted">The heat map shows where the image differs from the normal images the model was trained on;
the colour scale is fixed from normal images. Research software: a score is not a diagnosis.
The image is sent to this service only and is not kept.</p>
<script>{SCRIPT}</script>
</body></html>
"""

__all__ = ["PAGE"]
