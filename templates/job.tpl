% rebase('layout', page=page, refresh='' if ended else 3)
% job_id = job['id']
<div class="heading">
<h1><span class="type">{{job['type']}}</span> <span class="badge {{job['status']}}">{{job['status']}}</span></h1>
<div class="actions">
% if job['status'] == 'failed' and in_redis:
  % include('action_button', page=page, action=page.link('/jobs/' + job_id + '/retry'), label='Retry', style='primary')
% end
% if job['status'] == 'delayed' and in_redis:
  % include('action_button', page=page, action=page.link('/jobs/' + job_id + '/promote'), label='Run now')
% end
% if job['status'] in ('pending', 'delayed', 'active') and in_redis:
  % include('action_button', page=page, action=page.link('/jobs/' + job_id + '/cancel'), label='Cancel', style='danger', confirm='Cancel this job?')
% end
% if ended and in_redis:
  % include('action_button', page=page, action=page.link('/jobs/' + job_id + '/delete'), label='Delete from Redis', style='danger', confirm='Delete this job from Redis? Its history stays in PostgreSQL.')
% end
</div>
</div>
<p class="mono muted">{{job_id}}</p>
% if not in_redis:
<p class="note">Redis no longer holds this job (cleanup age passed or deleted); this is its history from PostgreSQL, and it cannot be changed.</p>
% end
% if not job.get('historyAvailable', True):
<p class="flash error">PostgreSQL is unavailable: attempts are not shown.</p>
% end

<dl class="facts">
  <dt>Queue</dt><dd><a href="{{page.link('/queues/' + job['queue'])}}">{{job['queue']}}</a></dd>
  <dt>Priority</dt><dd>{{job['priority']}}</dd>
  <dt>Attempts</dt><dd>{{job['attemptLabel']}}</dd>
  <dt>Progress</dt><dd><progress max="100" value="{{job['progress'] or 0}}">{{job['progress'] or 0}}%</progress> {{job['progress'] or 0}}%
  % if job.get('progressMessage'):
  · {{job['progressMessage']}}
  % end
  </dd>
  <dt>Worker</dt><dd>{{job.get('worker') or '—'}}</dd>
  <dt>App</dt><dd>{{job['account']}}</dd>
  <dt>Created</dt><dd>{{page.format_time(job['createdAt'])}} <span class="muted">{{page.format_age(job['createdAt'])}}</span></dd>
  <dt>Run at</dt><dd>{{page.format_time(job.get('runAt'))}}</dd>
  <dt>Started</dt><dd>{{page.format_time(job['startedAt'])}}</dd>
  <dt>Ended</dt><dd>{{page.format_time(job['completedAt'])}}</dd>
</dl>

% if job.get('error'):
<h2>Last error</h2>
<pre class="error">{{job['error']}}</pre>
% end

<h2>Payload</h2>
<pre>{{page.pretty_json(job['payload'])}}</pre>

<h2>Options</h2>
<pre>{{page.pretty_json(job['options'])}}</pre>

% if job.get('result') is not None:
<h2>Result</h2>
<pre>{{page.pretty_json(job['result'])}}</pre>
% end

<h2>Attempts</h2>
% if attempts:
<table class="grid">
<thead><tr><th class="num">#</th><th>Outcome</th><th>At</th><th class="num">Duration</th><th>Error</th></tr></thead>
<tbody>
% for attempt in attempts:
<tr>
  <td class="num">{{attempt['attempt']}}</td>
  <td><span class="badge {{attempt['outcome']}}">{{attempt['outcome']}}</span></td>
  <td>{{page.format_time(attempt['at'])}}</td>
  <td class="num">{{'{:,} ms'.format(attempt['duration_ms']) if attempt['duration_ms'] is not None else ''}}</td>
  <td class="error">
  % if attempt['error']:
  {{attempt['error']}}
  % end
  % if attempt['stack']:
  <details><summary>Stack trace</summary><pre>{{attempt['stack']}}</pre></details>
  % end
  </td>
</tr>
% end
</tbody>
</table>
% else:
<p class="empty">No attempt has ended yet.</p>
% end
