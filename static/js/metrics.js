// The metrics page's charts (Chart.js), drawn from the JSON the page embeds as #metrics-data.
(function () {
  if (!window.Chart) return;
  const data = JSON.parse(document.getElementById("metrics-data").textContent);
  const colours = {"1": "#c62828", "2": "#ef6c00", "3": "#f9a825", "4": "#607d8b"};
  const lines = (series) => Object.keys(series).map((level) => ({
    label: "Sev" + level, data: series[level], borderColor: colours[level] || "#455a64",
    backgroundColor: colours[level] || "#455a64", spanGaps: true, tension: 0.2,
  }));
  const minutes = {y: {beginAtZero: true, title: {display: true, text: "minutes"}}};
  new Chart(document.getElementById("chart-mtta"), {type: "line", data: {labels: data.months, datasets: lines(data.mtta)},
    options: {plugins: {title: {display: true, text: "MTTA by month"}}, scales: minutes}});
  new Chart(document.getElementById("chart-mttr"), {type: "line", data: {labels: data.months, datasets: lines(data.mttr)},
    options: {plugins: {title: {display: true, text: "MTTR by month"}}, scales: minutes}});
  new Chart(document.getElementById("chart-sla"), {type: "bar", data: {labels: data.sla.labels, datasets: [
    {label: "Met", data: data.sla.met, backgroundColor: "#2e7d32"},
    {label: "Missed", data: data.sla.missed, backgroundColor: "#c62828"}]},
    options: {scales: {x: {stacked: true}, y: {stacked: true, beginAtZero: true}}}});
  new Chart(document.getElementById("chart-rto"), {type: "bar", data: {labels: data.rto.labels, datasets: [
    {label: "Within RTO", data: data.rto.within, backgroundColor: "#90a4ae"},
    {label: "RTO breached", data: data.rto.breaches, backgroundColor: "#c62828"}]},
    options: {indexAxis: "y", scales: {x: {stacked: true, beginAtZero: true}, y: {stacked: true}}}});
  new Chart(document.getElementById("chart-detection"), {type: "doughnut", data: {labels: data.detection.labels, datasets: [
    {data: data.detection.counts, backgroundColor: ["#1565c0", "#6a1b9a", "#ef6c00", "#2e7d32"]}]}});
})();
