% rebase('layout', page=page)
<h1>Retry failed jobs</h1>
% if total == 0:
<p class="empty">No failed job in the history matches this filter.</p>
% else:
<p>{{'{:,}'.format(total)}}{{'+' if capped else ''}} failed job{{'' if total == 1 else 's'}} match:</p>
<ul class="filter-summary">
  <li>Queue: {{job_filter.queue or 'any'}}</li>
  <li>Type: {{job_filter.type or 'any'}}</li>
% if job_filter.text:
  <li>Text in payload or error: <code>{{job_filter.text}}</code></li>
% end
% if job_filter.error:
  <li>Last error: <code>{{page.truncate(job_filter.error, 300)}}</code></li>
% end
</ul>
% if total > limit:
<p class="note">One submission retries the {{'{:,}'.format(limit)}} oldest failures; submit again for the next ones.</p>
% end
<p>Each job goes back to its queue with a fresh set of retries. Jobs that Redis no longer holds (older than JOBS_CLEAN_FAILED_AFTER) are skipped.</p>
<form method="post" action="{{page.link('/retry')}}">
  <input type="hidden" name="{{page.csrf_field}}" value="{{page.csrf}}">
% for name in ('queue', 'type', 'q', 'error'):
% if params.get(name):
  <input type="hidden" name="{{name}}" value="{{params[name]}}">
% end
% end
  <button type="submit" class="danger">Retry {{'{:,}'.format(min(total, limit))}} job{{'' if min(total, limit) == 1 else 's'}}</button>
  <a href="{{page.link('/jobs', **params)}}">Cancel</a>
</form>
% end
