% rebase('layout', page=page)
<section class="login">
<h1>Log in</h1>
<p>Enter the API token (<code>JOBS_API_TOKEN</code>) of this server.</p>
% if error:
<p class="flash error" role="alert">{{error}}</p>
% end
<form method="post" action="{{page.link('/login')}}">
  <input type="hidden" name="{{page.csrf_field}}" value="{{page.csrf}}">
  <input type="hidden" name="next" value="{{next_path}}">
  <label for="token">Token</label>
  <input id="token" name="token" type="password" autocomplete="current-password" required autofocus>
  <button type="submit" class="primary">Log in</button>
</form>
</section>
