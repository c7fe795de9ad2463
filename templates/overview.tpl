<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="refresh" content="5">
<title>Jobs · nself</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2rem; color: #1d2330; }
table { border-collapse: collapse; }
th, td { padding: .35rem .8rem; border-bottom: 1px solid #dde1e8; text-align: right; }
th:first-child, td:first-child { text-align: left; }
</style>
</head>
<body>
<h1>Jobs</h1>
<table>
<thead><tr><th>Queue</th><th>Waiting</th><th>Active</th><th>Delayed</th><th>Completed</th><th>Failed</th><th>Cancelled</th></tr></thead>
<tbody>
% for queue in queues:
% row = counts[queue]
<tr><td>{{queue}}{{" (paused)" if row["paused"] else ""}}</td><td>{{row["waiting"]}}</td><td>{{row["active"]}}</td><td>{{row["delayed"]}}</td><td>{{row["completed"]}}</td><td>{{row["failed"]}}</td><td>{{row["cancelled"]}}</td></tr>
% end
</tbody>
</table>
<p>Job types: {{", ".join(types)}}</p>
</body>
</html>
