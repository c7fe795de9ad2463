<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{page.title}} · Jobs · nself</title>
<link rel="stylesheet" href="{{page.static('dashboard.css')}}">
<link rel="icon" href="data:,">
<script src="{{page.static('dashboard.js')}}" defer></script>
</head>
<body data-refresh="{{get('refresh', '')}}">
<header class="top">
  <a class="brand" href="{{page.link()}}">nself jobs</a>
  <nav>
    <a href="{{page.link()}}" class="{{'on' if page.active == 'overview' else ''}}">Overview</a>
    <a href="{{page.link('/jobs')}}" class="{{'on' if page.active == 'jobs' else ''}}">Jobs</a>
    % for name in ('high-priority', 'default', 'low-priority'):
    <a href="{{page.link('/queues/' + name)}}" class="{{'on' if page.active == 'queue:' + name else ''}}">{{name}}</a>
    % end
    <a href="{{page.link('/failures')}}" class="{{'on' if page.active == 'failures' else ''}}">Failures</a>
    <a href="{{page.link('/schedules')}}" class="{{'on' if page.active == 'schedules' else ''}}">Schedules</a>
  </nav>
  <span class="app" title="nself app: history lists show its jobs only">app: {{page.account}}</span>
  % if page.login_enabled and page.active is not None:
  <form method="post" action="{{page.link('/logout')}}" class="inline">
    <input type="hidden" name="{{page.csrf_field}}" value="{{page.csrf}}">
    <button type="submit" class="link">Log out</button>
  </form>
  % end
</header>
<main id="content">
% if page.flash:
<p class="flash {{page.flash['kind']}}" role="status">{{page.flash['text']}}</p>
% end
{{!base}}
</main>
<footer><span id="refreshed"></span> nself jobs {{page.version}} · times in UTC</footer>
</body>
</html>
