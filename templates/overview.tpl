% rebase('layout', page=page, refresh=5)
<h1>Overview</h1>
<section class="tiles">
% for state in ('waiting', 'active', 'delayed', 'failed'):
  <div class="tile {{state}}"><span class="value">{{'{:,}'.format(totals[state])}}</span><span class="label">{{state}}</span></div>
% end
  <div class="tile workers"><span class="value">{{len(workers)}}</span><span class="label">workers alive</span></div>
</section>

<h2>Queues</h2>
<table class="grid">
<thead><tr><th>Queue</th><th>State</th><th class="num">Waiting</th><th class="num">Active</th><th class="num">Delayed</th><th class="num">Completed</th><th class="num">Failed</th><th class="num">Cancelled</th><th class="num">Workers</th><th></th></tr></thead>
<tbody>
% for name in queues:
% row = counts[name]
<tr>
  <td><a href="{{page.link('/queues/' + name)}}">{{name}}</a></td>
  <td>
  % if row['paused']:
  <span class="badge paused">paused</span>
  % else:
  <span class="badge running">running</span>
  % end
  </td>
  <td class="num"><a href="{{page.link('/queues/' + name, status='pending')}}">{{row['waiting']}}</a></td>
  <td class="num"><a href="{{page.link('/queues/' + name, status='active')}}">{{row['active']}}</a></td>
  <td class="num"><a href="{{page.link('/queues/' + name, status='delayed')}}">{{row['delayed']}}</a></td>
  <td class="num"><a href="{{page.link('/queues/' + name, status='completed')}}">{{row['completed']}}</a></td>
  <td class="num"><a href="{{page.link('/queues/' + name, status='failed')}}">{{row['failed']}}</a></td>
  <td class="num"><a href="{{page.link('/queues/' + name, status='cancelled')}}">{{row['cancelled']}}</a></td>
  <td class="num">{{serving[name]}}</td>
  <td>
  % if row['paused']:
    % include('action_button', page=page, action=page.link('/queues/' + name + '/resume'), label='Resume', style='primary', back=page.link())
  % else:
    % include('action_button', page=page, action=page.link('/queues/' + name + '/pause'), label='Pause', confirm='Pause queue ' + name + '? Workers stop taking its jobs.', back=page.link())
  % end
  </td>
</tr>
% end
</tbody>
</table>
<p class="note">Live counts from Redis, for every app. Completed, failed and cancelled count the jobs Redis still keeps (JOBS_CLEAN_COMPLETED_AFTER, JOBS_CLEAN_FAILED_AFTER); the history keeps them all.</p>

<h2>Last 24 hours</h2>
% if history_error:
<p class="flash error">The history in PostgreSQL is unavailable, so the charts are missing: {{history_error}}</p>
% end
<div class="charts">
% for chart in charts:
<figure class="chart">
<figcaption>{{chart.title}}: {{'{:,}'.format(chart.total)}}</figcaption>
<svg viewBox="0 0 {{chart.width}} {{chart.height}}" role="img" aria-label="{{chart.title}}: {{chart.total}} jobs">
  <line class="axis" x1="{{chart.left}}" y1="{{chart.baseline}}" x2="{{chart.width}}" y2="{{chart.baseline}}"></line>
  % for tick in chart.value_ticks:
  <text class="tick" x="{{chart.left - 4}}" y="{{tick.at + 3}}" text-anchor="end">{{tick.label}}</text>
  <line class="grid" x1="{{chart.left}}" y1="{{tick.at}}" x2="{{chart.width}}" y2="{{tick.at}}"></line>
  % end
  % for bar in chart.bars:
  <rect class="bar {{chart.css_class}}" x="{{bar.x}}" y="{{bar.y}}" width="{{bar.width}}" height="{{bar.height}}"><title>{{bar.label}}</title></rect>
  % end
  % for tick in chart.time_ticks:
  <text class="tick" x="{{tick.at}}" y="{{chart.height - 4}}" text-anchor="middle">{{tick.label}}</text>
  % end
</svg>
</figure>
% end
</div>

<h2>Workers</h2>
% if workers:
<table class="grid">
<thead><tr><th>Worker</th><th>Queues</th><th class="num">PID</th><th>Running</th><th>Last heartbeat</th></tr></thead>
<tbody>
% for worker in workers:
<tr>
  <td>{{worker['name']}}</td>
  <td>{{', '.join(worker['queues'])}}</td>
  <td class="num">{{worker['pid'] or ''}}</td>
  <td>
  % if worker['job']:
  <a href="{{page.link('/jobs/' + worker['job'])}}" class="mono">{{page.short_id(worker['job'])}}</a>
  % else:
  <span class="muted">idle</span>
  % end
  </td>
  <td>{{page.format_age(worker['last_seen_at'])}}</td>
</tr>
% end
</tbody>
</table>
% else:
<p class="empty">No worker has sent a heartbeat in the last 15 seconds. Start one with <code>nself-jobs worker</code>.</p>
% end

<h2>Job types</h2>
<p class="types">
% for name in types:
<a href="{{page.link('/jobs', type=name)}}" class="chip">{{name}}</a>
% end
</p>
