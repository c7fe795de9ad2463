% rebase('layout', page=page, refresh=5 if first_page else '')
% list_path = '/queues/' + queue_name if queue_name else '/jobs'
% keep = {name: value for name, value in params.items() if name != 'queue' or not queue_name}
% keep['pageSize'] = page_size
<div class="heading">
<h1>{{page.title}}
% if paused:
<span class="badge paused">paused</span>
% end
</h1>
% if queue_name:
<div class="actions">
  % if paused:
  % include('action_button', page=page, action=page.link('/queues/' + queue_name + '/resume'), label='Resume queue', style='primary', back=page.link(list_path, **keep))
  % else:
  % include('action_button', page=page, action=page.link('/queues/' + queue_name + '/pause'), label='Pause queue', confirm='Pause queue ' + queue_name + '? Workers stop taking its jobs.', back=page.link(list_path, **keep))
  % end
</div>
% end
</div>

<nav class="tabs" aria-label="Filter by status">
  <a href="{{page.link(list_path, **dict(keep, status=None))}}" class="{{'on' if not job_filter.status else ''}}">All</a>
% for status, live_key in (('pending', 'waiting'), ('active', 'active'), ('delayed', 'delayed'), ('completed', 'completed'), ('failed', 'failed'), ('cancelled', 'cancelled')):
  <a href="{{page.link(list_path, **dict(keep, status=status))}}" class="{{'on' if job_filter.status == status else ''}}">{{status}} <span class="count" title="live in Redis">{{live[live_key]}}</span></a>
% end
</nav>

<form method="get" action="{{page.link(list_path)}}" class="filters">
% if page.account != 'primary':
  <input type="hidden" name="app" value="{{page.account}}">
% end
% if job_filter.status:
  <input type="hidden" name="status" value="{{job_filter.status}}">
% end
% if job_filter.error:
  <input type="hidden" name="error" value="{{job_filter.error}}">
% end
% if not queue_name:
  <label>Queue
  <select name="queue">
    <option value="">any</option>
    % for name in ('high-priority', 'default', 'low-priority'):
    <option value="{{name}}" {{'selected' if job_filter.queue == name else ''}}>{{name}}</option>
    % end
  </select></label>
% end
  <label>Type
  <select name="type">
    <option value="">any</option>
    % for name in types:
    <option value="{{name}}" {{'selected' if job_filter.type == name else ''}}>{{name}}</option>
    % end
  </select></label>
  <label>Text in payload or error
  <input type="search" name="q" value="{{job_filter.text or ''}}" maxlength="200" placeholder="e.g. invoice-42"></label>
  <button type="submit" class="primary">Filter</button>
  % if job_filter.type or job_filter.text or job_filter.error:
  <a href="{{page.link(list_path, status=job_filter.status)}}">Clear</a>
  % end
</form>

% if job_filter.error:
<p class="note">Only jobs whose last error is exactly: <code>{{page.truncate(job_filter.error, 300)}}</code></p>
% end

<p class="summary">
% if total == 0:
No jobs in the history match.
% else:
{{'{:,}'.format(total)}}{{'+' if capped else ''}} job{{'' if total == 1 else 's'}} in the history match.
% end
% if job_filter.status == 'failed' and total:
<a class="button danger" href="{{page.link('/retry', **dict(params, status='failed'))}}">Retry all matching…</a>
% end
</p>

% if pager['jobs']:
<table class="grid jobs">
<thead><tr><th>Job</th><th>Type</th><th>Status</th><th>Queue</th><th class="num">Attempts</th><th>Created</th><th>{{'Ended' if job_filter.status in ended else 'Started'}}</th><th>Last error</th><th></th></tr></thead>
<tbody>
% for job in pager['jobs']:
% job_id = str(job['id'])
<tr>
  <td><a class="mono" href="{{page.link('/jobs/' + job_id)}}" title="{{job_id}}">{{page.short_id(job_id)}}</a></td>
  <td>{{job['type']}}</td>
  <td><span class="badge {{job['status']}}">{{job['status']}}</span></td>
  <td>{{job['queue']}}</td>
  <td class="num">{{job['attempts']}}/{{job['max_attempts']}}</td>
  <td title="{{page.format_time(job['created_at'])}}">{{page.format_age(job['created_at'])}}</td>
  % shown = job['completed_at'] if job_filter.status in ended else job['started_at']
  <td title="{{page.format_time(shown)}}">{{page.format_age(shown)}}</td>
  <td class="error">{{page.truncate(job['last_error'], 120)}}</td>
  <td>
  % if job['status'] == 'failed':
  % include('action_button', page=page, action=page.link('/jobs/' + job_id + '/retry'), label='Retry', back=page.link(list_path, **keep))
  % end
  </td>
</tr>
% end
</tbody>
</table>
% end

<nav class="pager" aria-label="Pages">
% if not first_page:
  <a href="{{page.link(list_path, **keep)}}">« First page</a>
% end
% if pager['newer']:
  <a href="{{page.link(list_path, after=pager['newer'], **keep)}}">‹ Newer</a>
% end
% if pager['older']:
  <a href="{{page.link(list_path, before=pager['older'], **keep)}}">Older ›</a>
% end
</nav>
