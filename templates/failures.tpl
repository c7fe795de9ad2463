% rebase('layout', page=page)
<h1>Failures</h1>
<nav class="tabs" aria-label="Time window">
% for window in windows:
  <a href="{{page.link('/failures', hours=window)}}" class="{{'on' if window == hours else ''}}">last {{'7 days' if window == 168 else '%d h' % window}}</a>
% end
</nav>
<p class="note">Jobs that failed for good (retries used up) in this window, grouped by their last error. Every failed attempt is listed on the job's page.</p>
% if groups:
<table class="grid failures">
<thead><tr><th>Error</th><th class="num">Jobs</th><th>Types</th><th>Last seen</th><th>First seen</th><th>Examples</th><th></th></tr></thead>
<tbody>
% for group in groups:
<tr>
  <td class="error">
  % if group['error'] and len(group['error']) > 200:
  <details><summary>{{page.truncate(group['error'], 200)}}</summary><pre>{{group['error']}}</pre></details>
  % else:
  {{group['error'] or '(no message)'}}
  % end
  </td>
  <td class="num"><a href="{{page.link('/jobs', **group['filter'])}}">{{'{:,}'.format(group['jobs'])}}</a></td>
  <td>{{', '.join(group['types'])}}</td>
  <td title="{{page.format_time(group['last_seen'])}}">{{page.format_age(group['last_seen'])}}</td>
  <td title="{{page.format_time(group['first_seen'])}}">{{page.format_age(group['first_seen'])}}</td>
  <td>
  % for job_id in group['sample_ids']:
  <a class="mono" href="{{page.link('/jobs/' + job_id)}}">{{page.short_id(job_id)}}</a>
  % end
  </td>
  <td><a class="button danger" href="{{page.link('/retry', **group['filter'])}}">Retry…</a></td>
</tr>
% end
</tbody>
</table>
% else:
<p class="empty">No job failed in this window.</p>
% end
