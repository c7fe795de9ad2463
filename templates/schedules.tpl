% rebase('layout', page=page)
<h1>Schedules</h1>
% if schedules:
<table class="grid">
<thead><tr><th>Name</th><th>Type</th><th>Queue</th><th>Cron</th><th>State</th><th>Last run</th><th>Next runs</th><th></th></tr></thead>
<tbody>
% for schedule in schedules:
% name = schedule['name']
<tr>
  <td><strong>{{name}}</strong>
  % if schedule.get('description'):
  <br><span class="muted">{{schedule['description']}}</span>
  % end
  </td>
  <td>{{schedule['type']}}</td>
  <td>{{schedule['queue']}}</td>
  <td><code>{{schedule['cron']}}</code><br><span class="muted">{{schedule['timezone']}}</span></td>
  <td><span class="badge {{'running' if schedule['enabled'] else 'paused'}}">{{'enabled' if schedule['enabled'] else 'disabled'}}</span></td>
  <td title="{{page.format_time(schedule['lastRunAt'])}}">{{page.format_age(schedule['lastRunAt']) or 'never'}}</td>
  <td>
  % if schedule['upcoming']:
  % for moment in schedule['upcoming']:
  <div>{{page.format_time(moment)}}</div>
  % end
  % else:
  <span class="muted">—</span>
  % end
  </td>
  <td class="actions">
  % if schedule['enabled']:
  % include('action_button', page=page, action=page.link('/schedules/' + name + '/disable'), label='Disable')
  % else:
  % include('action_button', page=page, action=page.link('/schedules/' + name + '/enable'), label='Enable')
  % end
  % include('action_button', page=page, action=page.link('/schedules/' + name + '/run-now'), label='Run now', style='primary', confirm='Queue one run of ' + name + ' now?')
  </td>
</tr>
% end
</tbody>
</table>
% else:
<p class="empty">No schedules for this app. Create one with <code>POST /api/schedules</code>.</p>
% end
