// aicctv dashboard: live counts on the Now page, charts on the Day/Week/Month pages.
// Plain JavaScript, no build step, no external resources (Chart.js is shipped beside this file).
(function () {
  "use strict";
  var page = document.body.dataset.page;

  function text(value, fallback) { return value === null || value === undefined ? fallback : String(value); }

  function age(seconds) {
    if (seconds === null || seconds === undefined) return "never";
    if (seconds < 90) return Math.round(seconds) + " s ago";
    if (seconds < 5400) return Math.round(seconds / 60) + " min ago";
    if (seconds < 172800) return Math.round(seconds / 3600) + " h ago";
    return Math.round(seconds / 86400) + " days ago";
  }

  // As percent_covered (edge/wire/export.py): a few seconds of footage is not nothing.
  function percent(coverage) {
    if (coverage === null || coverage === undefined) return "–";
    return coverage > 0 && coverage < 0.01 ? "<1%" : Math.floor(coverage * 100) + "%";
  }

  function lastHour(row) {
    if (!row.last_hour) return "none yet";
    var start = row.last_hour.local_start;
    return start.slice(0, 10) + " " + start.slice(11, 16) + ": " + row.last_hour.visitors + " visitors";
  }

  function refreshLive() {
    var cards = document.getElementById("cards");
    var error = document.getElementById("live-error");
    fetch("api/v1/live", { headers: { Accept: "application/json" }, cache: "no-store", credentials: "same-origin" })
      .then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.json();
      })
      .then(function (data) {
        error.hidden = true;
        var known = {};
        data.devices.forEach(function (row) {
          known[row.device] = true;
          var card = cards.querySelector('[data-device="' + CSS.escape(row.device) + '"]');
          if (!card) { location.reload(); return; }
          card.className = "card state-" + row.state;
          var set = function (field, value) { var el = card.querySelector('[data-field="' + field + '"]'); if (el) el.textContent = value; };
          set("state", row.state);
          set("in_view", text(row.in_view, "–"));
          set("visitors_today", text(row.visitors_today, "0"));
          set("visitors_this_hour", text(row.visitors_this_hour, "–"));
          set("last_hour", lastHour(row));
          set("coverage", row.last_hour ? percent(row.last_hour.coverage) : "–");
          set("last_seen", age(row.last_seen_age_s));
        });
        document.getElementById("updated").textContent = new Date(data.now * 1000).toLocaleTimeString();
        document.body.dataset.liveUpdates = String(Number(document.body.dataset.liveUpdates || 0) + 1);
      })
      .catch(function () { error.hidden = false; });
  }

  if (page === "now") {
    var every = Number(document.getElementById("cards").dataset.refreshMs) || 5000;
    setInterval(refreshLive, every);
  }

  // ---- charts ------------------------------------------------------------------------------
  var dataNode = document.getElementById("chart-data");
  if (!dataNode || typeof Chart === "undefined") return;
  var d = JSON.parse(dataNode.textContent);
  var css = getComputedStyle(document.documentElement);
  var color = function (name) { return css.getPropertyValue(name).trim(); };

  function hatch(fg, bg) {
    var c = document.createElement("canvas");
    c.width = c.height = 8;
    var g = c.getContext("2d");
    g.fillStyle = bg; g.fillRect(0, 0, 8, 8);
    g.strokeStyle = fg; g.lineWidth = 2;
    g.beginPath(); g.moveTo(0, 8); g.lineTo(8, 0); g.moveTo(-2, 2); g.lineTo(2, -2); g.moveTo(6, 10); g.lineTo(10, 6); g.stroke();
    return g.createPattern(c, "repeat");
  }

  // Partial buckets: the same colours, hatched, so a lower bound never looks like a full count.
  function fills(base) {
    var partial = hatch(base, "#ffffff");
    return d.state.map(function (s) { return s === "partial" ? partial : base; });
  }

  // Closed hours (grey), and buckets without any record (red hatching: unknown, not zero).
  var backdrop = {
    id: "aicctvBackdrop",
    beforeDatasetsDraw: function (chart) {
      var x = chart.scales.x, area = chart.chartArea, ctx = chart.ctx;
      var nodata = hatch("rgba(192, 57, 43, 0.55)", "rgba(255, 255, 255, 0)");
      var width = x.getPixelForValue(1) - x.getPixelForValue(0) || area.right - area.left;
      ctx.save();
      d.labels.forEach(function (_, i) {
        var left = x.getPixelForValue(i) - width / 2;
        if (d.closed[i]) { ctx.fillStyle = color("--closed"); ctx.fillRect(left, area.top, width, area.bottom - area.top); }
        if (d.state[i] === "nodata") {
          ctx.fillStyle = nodata;
          ctx.fillRect(left + 1, area.top, width - 2, area.bottom - area.top);
        }
      });
      ctx.restore();
    },
  };

  var values = function (key) { return d[key].map(function (v, i) { return d.state[i] === "nodata" || d.state[i] === "future" ? null : v; }); };
  var chart = new Chart(document.getElementById("chart"), {
    type: "bar",
    data: {
      labels: d.labels,
      datasets: [
        { label: "female", data: values("female"), backgroundColor: fills(color("--female")), borderColor: color("--female"), borderWidth: 1, stack: "v" },
        { label: "male", data: values("male"), backgroundColor: fills(color("--male")), borderColor: color("--male"), borderWidth: 1, stack: "v" },
        { label: "not classified", data: values("unclassified"), backgroundColor: fills(color("--unclassified")), borderColor: color("--unclassified"), borderWidth: 1, stack: "v" },
        { label: d.compare_label, data: d.compare, type: "line", stack: "c", borderColor: color("--compare"), backgroundColor: color("--compare"),
          borderDash: [5, 4], borderWidth: 2, pointRadius: 2, spanGaps: false, order: -1 },
      ],
    },
    options: {
      responsive: true, maintainAspectRatio: false, animation: false,
      interaction: { mode: "index", intersect: false },
      plugins: {
        legend: { display: false },
        tooltip: {
          callbacks: {
            footer: function (items) {
              var i = items[0].dataIndex, lines = [];
              if (d.state[i] === "nodata") lines.push("no data: unknown, not zero");
              else if (d.coverage[i] !== null) lines.push("coverage " + Math.floor(d.coverage[i] * 100) + "%" + (d.state[i] === "partial" ? " (partial)" : ""));
              if (d.closed[i]) lines.push("closed");
              return lines.join("\n");
            },
          },
        },
      },
      scales: {
        x: { stacked: true, grid: { display: false }, ticks: { autoSkip: true, maxRotation: 0 } },
        y: { stacked: true, beginAtZero: true, ticks: { precision: 0 }, title: { display: true, text: "visitors" } },
      },
    },
    plugins: [backdrop],
  });
  window.aicctvChart = chart;
  document.body.dataset.chartReady = "1";
})();
