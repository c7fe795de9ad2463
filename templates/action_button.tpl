% if get('confirm'):
<form method="post" action="{{action}}" class="inline" data-confirm="{{confirm}}">
% else:
<form method="post" action="{{action}}" class="inline">
% end
<input type="hidden" name="{{page.csrf_field}}" value="{{page.csrf}}">
% if get('back'):
<input type="hidden" name="back" value="{{back}}">
% end
<button type="submit" class="{{get('style', 'secondary')}}">{{label}}</button>
</form>
